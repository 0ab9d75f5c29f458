// Segment images or whole-slide tiles with a pretrained or fine-tuned model (`csrefiner segment`).
process SEGMENT {
    tag "${meta.id}"
    label 'process_gpu'

    input:
    tuple val(meta), path(model, stageAs: 'model/*'), path(images, stageAs: 'input/*')
    path model_cache

    output:
    tuple val(meta), path("${prefix}"), emit: dir
    tuple val(meta), path("${prefix}/*.tif"), emit: masks
    tuple val("${task.process}"), val('csrefiner'), eval("csrefiner --version | sed 's/^csrefiner //'"), emit: versions, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    prefix = task.ext.prefix ?: "${meta.id}"
    def model_arg = model ? "--model-dir ${model}" : "--model ${meta.backend}:${meta.model_name}"
    def cache_dir = model_cache ? model_cache.toString() : ''
    def device = task.accelerator ? 'cuda' : 'cpu'
    """
    source task_home.sh
    if [ -n "${cache_dir}" ]; then cp -rs "\$(readlink -f ${cache_dir})/." "\$HOME/"; fi
    csrefiner segment ${model_arg} --input input --out ${prefix} --device ${device} ${args}
    """

    stub:
    prefix = task.ext.prefix ?: "${meta.id}"
    """
    mkdir -p ${prefix}
    touch ${prefix}/${meta.id}-mask.tif
    """
}
