// Cut a slide into fixed-size patches named with their slide coordinates, for annotation (`csrefiner crop`).
process CROP {
    tag "${meta.id}"
    label 'process_low'
    label 'csrefiner_base'

    input:
    tuple val(meta), path(image)

    output:
    tuple val(meta), path("${prefix}"), emit: dir
    tuple val(meta), path("${prefix}/*-img.tif"), emit: images
    tuple val("${task.process}"), val('csrefiner'), eval("csrefiner --version | sed 's/^csrefiner //'"), emit: versions, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    prefix = task.ext.prefix ?: "${meta.id}.patches"
    """
    source task_home.sh
    csrefiner crop --image ${image} --out ${prefix} ${args}
    """

    stub:
    prefix = task.ext.prefix ?: "${meta.id}.patches"
    """
    mkdir -p ${prefix}
    touch ${prefix}/${meta.id}-x0_y0_w64_h64-img.tif
    """
}
