/*
 * Annotated patches -> one FINETUNE task per model (in parallel) -> segment the held-out patches with the
 * model before (pretrained) and after fine-tuning -> one EVALUATE comparing all of them on the same patches.
 */
include { FINETUNE } from '../../../modules/finetune/main'
include { SEGMENT as SEGMENT_VAL } from '../../../modules/segment/main'
include { EVALUATE } from '../../../modules/evaluate/main'
include { patchPairs; splitPatches } from '../utils_csrefiner'

workflow FINETUNE_EVALUATE {
    take:
    ch_patch_dirs  // patch folders (CSRefiner names), pooled over all slides
    models         // list of model metas
    model_cache    // folder of pretrained weights, or []
    val_every      // every n-th patch is held out

    main:
    ch_split = ch_patch_dirs
        .flatMap { dir -> patchPairs(dir) }
        .toSortedList { a, b -> a[0] <=> b[0] }
        .map { pairs -> splitPatches(pairs, val_every) }   // [train files, val files]

    ch_val_images = ch_split.map { _train, val -> val.findAll { f -> f.name.contains('-img.') } }
    ch_val_masks = ch_split.map { _train, val -> val.findAll { f -> f.name.contains('-mask.') } }

    ch_finetune = ch_split
        .combine(channel.fromList(models))
        .map { train, val, m -> [m, train, val, m.base_model ?: []] }
    FINETUNE(ch_finetune, model_cache)

    // before: the pretrained model (a named one or a model folder); a model trained from scratch has none
    ch_before = channel.fromList(models)
        .filter { m -> m.pretrained != 'scratch' }
        .map { m -> [m + [id: "${m.id}.before"], m.base_model ?: []] }
    ch_after = FINETUNE.out.model.map { m, model -> [m + [id: "${m.id}.after"], model] }
    // combine() splices list items: wrap file lists so each stays one tuple element
    SEGMENT_VAL(ch_before.mix(ch_after).combine(ch_val_images.map { files -> [files] }), model_cache)

    ch_preds = SEGMENT_VAL.out.dir
        .map { _m, dir -> dir }
        .toSortedList { a, b -> a.name <=> b.name }
    EVALUATE(ch_val_masks.map { files -> [[id: 'validation'], files] }.combine(ch_preds.map { dirs -> [dirs] }))

    emit:
    models   = FINETUNE.out.model      // [meta, fine-tuned model folder]
    report   = EVALUATE.out.report
    versions = FINETUNE.out.versions.mix(SEGMENT_VAL.out.versions, EVALUATE.out.versions)
}
