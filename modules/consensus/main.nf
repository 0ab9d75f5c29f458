// Fuse several models' masks of the same patches into pseudo-labels with agreement scores (`csrefiner consensus`).
process CONSENSUS {
    tag "${meta.id}"
    label 'process_low'
    label 'csrefiner_base'

    input:
    tuple val(meta), path(preds)

    output:
    tuple val(meta), path("${prefix}"), emit: dir
    tuple val("${task.process}"), val('csrefiner'), eval("csrefiner --version | sed 's/^csrefiner //'"), emit: versions, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    prefix = task.ext.prefix ?: "${meta.id}.consensus"
    def pred_args = [preds].flatten().collect { p -> "--pred ${p}" }.join(' ')
    """
    source task_home.sh
    csrefiner consensus ${pred_args} --out ${prefix} ${args}
    """

    stub:
    prefix = task.ext.prefix ?: "${meta.id}.consensus"
    """
    mkdir -p ${prefix}
    """
}
