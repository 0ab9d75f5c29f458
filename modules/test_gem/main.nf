// A deterministic Stereo-seq GEM matrix covering a generated slide (-profile test only; no csrefiner step).
process TEST_GEM {
    tag "${meta.id}"
    label 'process_single'
    label 'csrefiner_base'

    input:
    val meta

    output:
    tuple val(meta), path("${prefix}.gem.gz"), emit: gem
    tuple val("${task.process}"), val('python'), eval("python3 --version | sed 's/^Python //'"), emit: versions, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    prefix = task.ext.prefix ?: "${meta.id}"
    """
    make_test_gem.py --width ${meta.size} --height ${meta.size} --out ${prefix}.gem.gz
    """

    stub:
    prefix = task.ext.prefix ?: "${meta.id}"
    """
    echo | gzip > ${prefix}.gem.gz
    """
}
