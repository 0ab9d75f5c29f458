/*
 * The csrefiner flow for a set of slides (one samplesheet row each: image, optional matrix, optional patches):
 *   annotated patches -> FINETUNE (one task per model) -> SEGMENT + EVALUATE before/after on held-out patches
 *   slide -> TILE -> SEGMENT (one task per tile batch) -> STITCH (groupKey on the batch count) -> CGEF
 *   slide -> CROP -> SEGMENT with every model -> CONSENSUS + SUGGEST (patches to annotate next)
 */
include { FINETUNE_EVALUATE } from '../subworkflows/local/finetune_evaluate'
include { SEGMENT_SLIDE } from '../subworkflows/local/segment_slide'
include { SUGGEST_PATCHES } from '../subworkflows/local/suggest_patches'
include { CGEF } from '../modules/cgef/main'

workflow CSREFINER {
    take:
    ch_samples     // [meta, image, matrix or [], patch folder or []]
    models         // list of model metas (parseModels)
    slide_model    // id of the model that segments the slides
    model_cache    // folder of pretrained weights, or []
    opts           // [skip_finetune, val_every, tiles_per_task, suggest_top] from params

    main:
    ch_images = ch_samples.map { meta, image, _matrix, _patches -> [meta, image] }
    ch_patch_dirs = ch_samples
        .filter { _meta, _image, _matrix, patches -> patches }
        .map { _meta, _image, _matrix, patches -> patches }

    // Models: fine-tuned on the pooled patches, or the pretrained ones as they are
    if (opts.skip_finetune) {
        ch_models = channel.fromList(models).map { m -> [m, m.base_model ?: []] }
        ch_versions = channel.empty()
    }
    else {
        FINETUNE_EVALUATE(ch_patch_dirs, models, model_cache, opts.val_every)
        ch_models = FINETUNE_EVALUATE.out.models
        ch_versions = FINETUNE_EVALUATE.out.versions
    }

    // Whole slides, tile by tile, with the chosen model
    ch_slide_model = ch_models.filter { m, _model -> m.id == slide_model }.first()
    SEGMENT_SLIDE(ch_images, ch_slide_model, model_cache, opts.tiles_per_task)
    ch_versions = ch_versions.mix(SEGMENT_SLIDE.out.versions)

    // Cell-bin matrix for every slide that has one
    ch_matrix = ch_samples
        .filter { _meta, _image, matrix, _patches -> matrix }
        .map { meta, _image, matrix, _patches -> [meta, matrix] }
    CGEF(SEGMENT_SLIDE.out.mask.join(ch_matrix))
    ch_versions = ch_versions.mix(CGEF.out.versions)

    // Human in the loop: where the models disagree, annotate next
    if (opts.suggest_top > 0 && models.size() > 1) {
        SUGGEST_PATCHES(ch_images, ch_models, models.size(), model_cache, opts.suggest_top)
        ch_versions = ch_versions.mix(SUGGEST_PATCHES.out.versions)
    }

    emit:
    mask     = SEGMENT_SLIDE.out.mask
    gef      = CGEF.out.gef
    versions = ch_versions
}
