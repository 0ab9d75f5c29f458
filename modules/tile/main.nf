// Cut a whole slide into overlapping tiles plus the manifest that `stitch` needs (`csrefiner tile`).
process TILE {
    tag "${meta.id}"
    label 'process_low'
    label 'csrefiner_base'

    input:
    tuple val(meta), path(image)

    output:
    tuple val(meta), path("${prefix}/*.json"), emit: manifest
    tuple val(meta), path("${prefix}/**.tif"), emit: tiles
    tuple val("${task.process}"), val('csrefiner'), eval("csrefiner --version | sed 's/^csrefiner //'"), emit: versions, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    prefix = task.ext.prefix ?: "${meta.id}.tiles"
    """
    source task_home.sh
    csrefiner tile --image ${image} --out ${prefix} ${args}
    """

    stub:
    prefix = task.ext.prefix ?: "${meta.id}.tiles"
    """
    mkdir -p ${prefix}
    echo '{}' > ${prefix}/manifest.json
    touch ${prefix}/${meta.id}-x0_y0_w64_h64-img.tif
    """
}
