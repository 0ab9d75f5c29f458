// Score prediction folders against ground truth and compare them with paired tests (`csrefiner evaluate`).
process EVALUATE {
    tag "${meta.id}"
    label 'process_low'
    label 'csrefiner_base'

    input:
    tuple val(meta), path(gt, stageAs: 'gt/*'), path(preds)

    output:
    tuple val(meta), path("${prefix}"), emit: report
    tuple val(meta), path("${prefix}/summary.json"), emit: summary
    tuple val("${task.process}"), val('csrefiner'), eval("csrefiner --version | sed 's/^csrefiner //'"), emit: versions, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    prefix = task.ext.prefix ?: "${meta.id}"
    def pred_args = [preds].flatten().collect { p -> "--pred ${p} --name ${p.name}" }.join(' ')
    """
    source task_home.sh
    csrefiner evaluate --gt gt ${pred_args} --out ${prefix} ${args}
    """

    stub:
    prefix = task.ext.prefix ?: "${meta.id}"
    """
    mkdir -p ${prefix}
    echo '{}' > ${prefix}/summary.json
    """
}
