// The demo's report: every step's outputs staged into the run layout of csrefiner/demo/layout.py, then
// summary.json, figures/ and one self-contained report.html (`csrefiner demo report`).
process DEMO_REPORT {
    tag "${meta.id}"
    label 'process_single'
    label 'csrefiner_base'

    input:
    tuple val(meta), path(data), path(models, stageAs: 'models/*'), path(suggested, stageAs: 'suggest'), path(annotated, stageAs: 'annotated'), path(evaluations, stageAs: 'evaluation/*'), path(hard_preds, stageAs: 'predictions/heldout_hard/*'), path(real_preds, stageAs: 'predictions/real/*'), path(wsi, stageAs: 'wsi/*'), path(stereo, stageAs: 'stereo/*')

    output:
    tuple val(meta), path("report.html"), emit: html
    tuple val(meta), path("summary.json"), emit: summary
    tuple val(meta), path("figures"), emit: figures
    tuple val("${task.process}"), val('csrefiner'), eval("csrefiner --version | sed 's/^csrefiner //'"), emit: versions, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    """
    source task_home.sh
    csrefiner demo report --run . ${args}
    """

    stub:
    """
    mkdir -p figures
    echo '<!DOCTYPE html><html></html>' > report.html
    echo '{}' > summary.json
    """
}
