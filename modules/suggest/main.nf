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
    path "versions.yml", emit: versions

    script:
    def args = task.ext.args ?: ''
    prefix = task.ext.prefix ?: "${meta.id}.suggested"
    def pred_args = [preds].flatten().collect { p -> "--pred ${p}" }.join(' ')
    """
    source task_home.sh
    csrefiner suggest ${pred_args} --image-dir images --top ${top} --out ${prefix} ${args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        csrefiner: \$(csrefiner --version | sed 's/^csrefiner //')
    END_VERSIONS
    """

    stub:
    prefix = task.ext.prefix ?: "${meta.id}.suggested"
    """
    mkdir -p ${prefix}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        csrefiner: \$(csrefiner --version | sed 's/^csrefiner //')
    END_VERSIONS
    """
}
