// The demo's generated slide (easy + dense/blurred hard block) with ground truth, its patch sets, a GEM and
// demo.json (every step's options) (`csrefiner demo data`): -profile test's data, nothing downloaded.
process DEMO_DATA {
    tag "${meta.id}"
    label 'process_single'
    label 'csrefiner_base'

    input:
    val meta

    output:
    tuple val(meta), path("data"), emit: data
    tuple val(meta), path("data/demo.json"), emit: spec
    tuple val(meta), path("data/slide.tif"), emit: slide
    tuple val(meta), path("data/pool.tif"), emit: pool
    tuple val(meta), path("data/slide.gem.gz"), emit: gem
    tuple val(meta), path("data/easy_train/*.tif"), emit: easy_train
    tuple val(meta), path("data/easy_val/*.tif"), emit: easy_val
    tuple val(meta), path("data/heldout_hard/*-img.tif"), emit: heldout_images
    tuple val(meta), path("data/heldout_hard/*-mask.tif"), emit: heldout_masks
    tuple val(meta), path("data/real/*-img.tif"), optional: true, emit: real_images
    tuple val(meta), path("data/real/*-mask.tif"), optional: true, emit: real_masks
    tuple val("${task.process}"), val('csrefiner'), eval("csrefiner --version | sed 's/^csrefiner //'"), emit: versions, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    """
    source task_home.sh
    csrefiner demo data --out data ${args}
    """

    stub:
    """
    mkdir -p data/easy_train data/easy_val data/heldout_hard
    echo '{"config": {"patches": 2}, "options": {"baseline": "", "finetune": "", "pool_tile": "", "suggest": ""}, "backend_options": {"baseline": {}, "finetune": {}}}' > data/demo.json
    touch data/slide.tif data/pool.tif data/slide.gem.gz
    touch data/easy_train/demo-x0_y0_w64_h64-img.tif data/easy_train/demo-x0_y0_w64_h64-mask.tif
    touch data/easy_val/demo-x0_y64_w64_h64-img.tif data/easy_val/demo-x0_y64_w64_h64-mask.tif
    touch data/heldout_hard/demo-x64_y64_w64_h64-img.tif data/heldout_hard/demo-x64_y64_w64_h64-mask.tif
    """
}
