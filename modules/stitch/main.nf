// Merge per-tile instance masks into one uint32 whole-slide mask, no cell cut or doubled at a seam (`csrefiner stitch`).
process STITCH {
    tag "${meta.id}"
    label 'process_medium'
    label 'csrefiner_base'

    input:
    tuple val(meta), path(manifest), path(tiles, stageAs: 'tiles/*')

    output:
    tuple val(meta), path("${prefix}-mask.tif"), emit: mask
    tuple val(meta), path("${prefix}-stitch.json"), emit: report
    tuple val(meta), path("${prefix}-preview.png"), emit: preview
    tuple val("${task.process}"), val('csrefiner'), eval("csrefiner --version | sed 's/^csrefiner //'"), emit: versions, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    prefix = task.ext.prefix ?: "${meta.id}"
    """
    source task_home.sh
    csrefiner stitch --manifest ${manifest} --tiles tiles --out ${prefix}-mask.tif --report ${prefix}-stitch.json --preview ${prefix}-preview.png ${args}
    """

    stub:
    prefix = task.ext.prefix ?: "${meta.id}"
    """
    touch ${prefix}-mask.tif ${prefix}-stitch.json ${prefix}-preview.png
    """
}
