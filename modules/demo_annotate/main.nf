// The demo's simulated annotator: each suggested patch gets its ground truth in place of the consensus mask
// (`csrefiner demo annotate`). With real data, a person corrects these patches instead (QuPath, `annotations`).
process DEMO_ANNOTATE {
    tag "${meta.id}"
    label 'process_single'
    label 'csrefiner_base'

    input:
    tuple val(meta), path(suggested), path(data)

    output:
    tuple val(meta), path("${prefix}"), emit: dir
    tuple val(meta), path("${prefix}/*.tif"), emit: patches
    tuple val("${task.process}"), val('csrefiner'), eval("csrefiner --version | sed 's/^csrefiner //'"), emit: versions, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    prefix = task.ext.prefix ?: "annotated"
    """
    source task_home.sh
    csrefiner demo annotate --suggested ${suggested} --data ${data} --out ${prefix} ${args}
    """

    stub:
    prefix = task.ext.prefix ?: "annotated"
    """
    mkdir -p ${prefix}
    touch ${prefix}/demo-x0_y0_w64_h64-img.tif ${prefix}/demo-x0_y0_w64_h64-mask.tif
    """
}
