// Fine-tune one model on the annotated patches (`csrefiner finetune`): one task per chosen model, in parallel.
process FINETUNE {
    tag "${meta.id}"
    label 'process_gpu'

    input:
    tuple val(meta), path(train, stageAs: 'train/*'), path(val, stageAs: 'val/*'), path(base_model)
    path model_cache

    output:
    tuple val(meta), path("${prefix}"), emit: model
    tuple val("${task.process}"), val('csrefiner'), eval("csrefiner --version | sed 's/^csrefiner //'"), emit: versions, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    prefix = task.ext.prefix ?: "${meta.id}"
    def pretrained = base_model ? base_model.toString() : meta.pretrained
    def cache_dir = model_cache ? model_cache.toString() : ''
    def device = task.accelerator ? 'cuda' : 'cpu'
    def val_arg = val ? '--val val' : ''  // none staged: finetune holds out --val-fraction of train (seeded)
    """
    source task_home.sh
    if [ -n "${cache_dir}" ]; then cp -rs "\$(readlink -f ${cache_dir})/." "\$HOME/"; fi
    csrefiner finetune --model ${meta.backend} --train train ${val_arg} --pretrained ${pretrained} --out ${prefix} --device ${device} ${args}
    """

    stub:
    prefix = task.ext.prefix ?: "${meta.id}"
    """
    mkdir -p ${prefix}
    echo '{}' > ${prefix}/model.json
    """
}
