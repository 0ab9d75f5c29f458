// Join the whole-slide instance mask with the chip's GEM/GEF into a cell-bin GEF and AnnData (`csrefiner cgef`).
process CGEF {
    tag "${meta.id}"
    label 'process_medium'
    label 'csrefiner_base'

    input:
    tuple val(meta), path(mask), path(matrix)

    output:
    tuple val(meta), path("${prefix}.cellbin.gef"), emit: gef
    tuple val(meta), path("${prefix}.h5ad"), emit: h5ad
    tuple val("${task.process}"), val('csrefiner'), eval("csrefiner --version | sed 's/^csrefiner //'"), emit: versions, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    prefix = task.ext.prefix ?: "${meta.id}"
    """
    source task_home.sh
    csrefiner cgef --matrix ${matrix} --mask ${mask} --out ${prefix}.cellbin.gef --h5ad ${prefix}.h5ad ${args}
    """

    stub:
    prefix = task.ext.prefix ?: "${meta.id}"
    """
    touch ${prefix}.cellbin.gef ${prefix}.h5ad
    """
}
