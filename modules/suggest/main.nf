// Rank patches by model disagreement and write the top N, ready to annotate next (`csrefiner suggest`).
process SUGGEST {
    tag "${meta.id}"
    label 'process_low'
    label 'csrefiner_base'

    input:
    tuple val(meta), path(preds), path(images, stageAs: 'images/*')
    val top

    output:
    tuple val(meta), path("${prefix}"), emit: dir
    tuple val("${task.process}"), val('csrefiner'), eval("csrefiner --version | sed 's/^csrefiner //'"), emit: versions, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    prefix = task.ext.prefix ?: "${meta.id}.suggested"
    def pred_args = [preds].flatten().collect { p -> "--pred ${p}" }.join(' ')
    """
    source task_home.sh
    csrefiner suggest ${pred_args} --image-dir images --top ${top} --out ${prefix} ${args}
    """

    stub:
    prefix = task.ext.prefix ?: "${meta.id}.suggested"
    """
    mkdir -p ${prefix}
    """
}
