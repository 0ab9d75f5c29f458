// Generated nuclei images with exact ground truth (`csrefiner synth`): the test profile's data, nothing downloaded.
process SYNTH {
    tag "${meta.id}"
    label 'process_single'
    label 'csrefiner_base'

    input:
    val meta

    output:
    tuple val(meta), path("${prefix}"), emit: dir
    tuple val(meta), path("${prefix}/*-img.tif"), emit: images
    tuple val(meta), path("${prefix}/*-mask.tif"), emit: masks
    tuple val("${task.process}"), val('csrefiner'), eval("csrefiner --version | sed 's/^csrefiner //'"), emit: versions, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    prefix = task.ext.prefix ?: "${meta.id}"
    """
    source task_home.sh
    csrefiner synth --out ${prefix} --name ${meta.id} ${args}
    """

    stub:
    prefix = task.ext.prefix ?: "${meta.id}"
    """
    mkdir -p ${prefix}
    touch ${prefix}/${meta.id}-x0_y0_w64_h64-img.tif ${prefix}/${meta.id}-x0_y0_w64_h64-mask.tif
    touch ${prefix}/${meta.id}-x0_y64_w64_h64-img.tif ${prefix}/${meta.id}-x0_y64_w64_h64-mask.tif
    """
}
