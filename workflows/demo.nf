/*
 * -profile test: the demo (`csrefiner demo run`) as a pipeline. Its steps are csrefiner/demo/steps.py's, called
 * here in that order (tests/test_pipeline_flow.py checks it), each with the options of data/demo.json:
 *   DEMO_DATA -> baseline per model (FINETUNE_BASELINE on the easy block, or a pretrained model) ->
 *   TILE_POOL -> SEGMENT_POOL (baselines + watershed) -> SUGGEST_POOL -> DEMO_ANNOTATE (ground truth stands in
 *   for the annotator) -> FINETUNE_ANNOTATED -> SEGMENT_EVAL + EVALUATE (held-out hard patches, real nuclei)
 *   -> SEGMENT_SLIDE with the best fine-tuned model -> CGEF -> DEMO_REPORT (report.html).
 */
include { DEMO_DATA } from '../modules/demo_data/main'
include { FINETUNE as FINETUNE_BASELINE } from '../modules/finetune/main'
include { TILE as TILE_POOL } from '../modules/tile/main'
include { SEGMENT as SEGMENT_POOL } from '../modules/segment/main'
include { SUGGEST as SUGGEST_POOL } from '../modules/suggest/main'
include { DEMO_ANNOTATE } from '../modules/demo_annotate/main'
include { FINETUNE as FINETUNE_ANNOTATED } from '../modules/finetune/main'
include { SEGMENT as SEGMENT_EVAL } from '../modules/segment/main'
include { EVALUATE } from '../modules/evaluate/main'
include { SEGMENT_SLIDE } from '../subworkflows/local/segment_slide'
include { CGEF } from '../modules/cgef/main'
include { DEMO_REPORT } from '../modules/demo_report/main'
include { bestModel; demoArgs } from '../subworkflows/local/utils_csrefiner'

workflow DEMO {
    take:
    models         // list of model metas (parseModels); `backend:scratch` = a baseline trained on the easy block
    model_cache    // folder of pretrained weights, or []
    tiles_per_task // tiles per whole-slide segmentation task

    main:
    DEMO_DATA(channel.value([id: 'demo']))
    ch_spec = DEMO_DATA.out.spec.map { _meta, json -> new groovy.json.JsonSlurper().parseText(json.text) }.first()
    ch_versions = DEMO_DATA.out.versions

    // Baselines: from scratch on the easy block, or the pretrained model as it is -> [model meta, folder or []]
    ch_models = channel.fromList(models)
    ch_baseline_in = ch_models
        .filter { m -> m.pretrained == 'scratch' }
        .combine(DEMO_DATA.out.easy_train.map { _meta, files -> [files] })
        .combine(DEMO_DATA.out.easy_val.map { _meta, files -> [files] })
        .combine(ch_spec)
        .map { m, train, val, spec ->
            [m + [id: "${m.id}-baseline", model: m, args: demoArgs(spec, 'baseline', m.backend)], train, val, []]
        }
    FINETUNE_BASELINE(ch_baseline_in, model_cache)
    ch_base = FINETUNE_BASELINE.out.model
        .map { mb, folder -> [mb.model, folder] }
        .mix(ch_models.filter { m -> m.pretrained != 'scratch' }.map { m -> [m, m.base_model ?: []] })
    ch_versions = ch_versions.mix(FINETUNE_BASELINE.out.versions)

    // Segmenters by method name: <model>-baseline and watershed (the second opinion, no weights)
    ch_watershed = channel.of([[id: 'watershed', backend: 'watershed', model_name: 'default'], []])
    ch_baselines = ch_base.map { m, folder -> [m + [id: "${m.id}-baseline"], folder] }

    // Suggest: the annotation pool in tiles of 2 x 2 patches, segmented by every opinion, ranked by disagreement
    TILE_POOL(DEMO_DATA.out.pool.combine(ch_spec).map { meta, image, spec -> [meta + [args: spec.options.pool_tile], image] })
    ch_pool_tiles = TILE_POOL.out.tiles.map { _meta, tiles -> [tiles] }
    SEGMENT_POOL(ch_baselines.mix(ch_watershed).combine(ch_pool_tiles), model_cache)
    ch_pool_preds = SEGMENT_POOL.out.dir
        .map { _m, dir -> dir }
        .toSortedList { a, b -> a.name <=> b.name }
        .map { dirs -> [dirs] }
    ch_suggest_in = ch_pool_preds
        .combine(ch_pool_tiles)
        .combine(ch_spec)
        .map { dirs, tiles, spec -> [[id: 'pool', args: spec.options.suggest], dirs, tiles] }
    SUGGEST_POOL(ch_suggest_in, ch_spec.map { spec -> spec.config.patches })
    DEMO_ANNOTATE(SUGGEST_POOL.out.dir.combine(DEMO_DATA.out.data.map { _meta, data -> data }))
    ch_versions = ch_versions.mix(TILE_POOL.out.versions, SEGMENT_POOL.out.versions, SUGGEST_POOL.out.versions,
        DEMO_ANNOTATE.out.versions)

    // Fine-tune every model from its baseline on the annotated patches (finetune holds out its own share)
    ch_finetune_in = ch_base
        .combine(DEMO_ANNOTATE.out.patches.map { _meta, files -> [files] })
        .combine(ch_spec)
        .map { m, base, files, spec ->
            def tuned = m + [id: "${m.id}-finetuned", model: m, args: demoArgs(spec, 'finetune', m.backend)]
            [base ? tuned + [pretrained: 'base_model'] : tuned, files, [], base]
        }
    FINETUNE_ANNOTATED(ch_finetune_in, model_cache)
    ch_tuned = FINETUNE_ANNOTATED.out.model.map { mt, folder -> [mt.model + [id: mt.id], folder] }
    ch_versions = ch_versions.mix(FINETUNE_ANNOTATED.out.versions)

    // Before / after on each patch set (held-out hard patches; stardist's real nuclei in the full preset)
    ch_set_images = DEMO_DATA.out.heldout_images.map { _meta, files -> ['heldout_hard', files] }
        .mix(DEMO_DATA.out.real_images.map { _meta, files -> ['real', files] })
    ch_set_masks = DEMO_DATA.out.heldout_masks.map { _meta, files -> ['heldout_hard', files] }
        .mix(DEMO_DATA.out.real_masks.map { _meta, files -> ['real', files] })
    def n_methods = 2 * models.size() + 1
    ch_eval_in = ch_baselines.mix(ch_tuned, ch_watershed)
        .combine(ch_set_images)
        .map { m, folder, set, files -> [m + [set: set], folder, files] }
    SEGMENT_EVAL(ch_eval_in, model_cache)
    ch_eval_preds = SEGMENT_EVAL.out.dir
        .map { m, dir -> [groupKey(m.set, n_methods), dir] }
        .groupTuple()
        .map { key, dirs -> [key.getGroupTarget(), dirs.sort { d -> d.name }] }
    EVALUATE(ch_eval_preds.join(ch_set_masks).map { set, dirs, masks -> [[id: set], masks, dirs] })
    ch_versions = ch_versions.mix(SEGMENT_EVAL.out.versions, EVALUATE.out.versions)

    // The whole slide, tile by tile, with the best fine-tuned model; then the cell-bin matrix
    def ids = models.collect { m -> m.id }
    ch_best = EVALUATE.out.summary
        .filter { meta, _json -> meta.id == 'heldout_hard' }
        .map { _meta, json -> bestModel(json, ids) }
    ch_slide_model = ch_tuned
        .combine(ch_best)
        .filter { m, _folder, best -> m.id == "${best}-finetuned" }
        .map { m, folder, _best -> [m, folder] }
        .first()
    ch_slide = DEMO_DATA.out.slide.map { _meta, image -> [[id: 'slide'], image] }
    SEGMENT_SLIDE(ch_slide, ch_slide_model, model_cache, tiles_per_task)
    CGEF(SEGMENT_SLIDE.out.mask.join(DEMO_DATA.out.gem.map { _meta, gem -> [[id: 'slide'], gem] }))
    ch_versions = ch_versions.mix(SEGMENT_SLIDE.out.versions, CGEF.out.versions)

    // Every artefact staged into the demo's run layout -> report.html
    ch_model_dirs = FINETUNE_BASELINE.out.model.mix(FINETUNE_ANNOTATED.out.model).map { _m, folder -> folder }.toList()
    ch_hard_preds = SEGMENT_EVAL.out.dir.filter { m, _dir -> m.set == 'heldout_hard' }.map { _m, dir -> dir }.toList()
    ch_real_preds = SEGMENT_EVAL.out.dir.filter { m, _dir -> m.set == 'real' }.map { _m, dir -> dir }.toList()
    ch_wsi = SEGMENT_SLIDE.out.mask.join(SEGMENT_SLIDE.out.report).join(SEGMENT_SLIDE.out.preview)
        .map { _meta, mask, report, preview -> [mask, report, preview] }
    ch_stereo = CGEF.out.gef.join(CGEF.out.h5ad).map { _meta, gef, h5ad -> [gef, h5ad] }
    ch_report_in = DEMO_DATA.out.data
        .combine(ch_model_dirs.map { dirs -> [dirs] })
        .combine(SUGGEST_POOL.out.dir.map { _meta, dir -> dir })
        .combine(DEMO_ANNOTATE.out.dir.map { _meta, dir -> dir })
        .combine(EVALUATE.out.report.map { _meta, dir -> dir }.toList().map { dirs -> [dirs] })
        .combine(ch_hard_preds.map { dirs -> [dirs] })
        .combine(ch_real_preds.map { dirs -> [dirs] })
        .combine(ch_wsi.map { files -> [files] })
        .combine(ch_stereo.map { files -> [files] })
    DEMO_REPORT(ch_report_in)
    ch_versions = ch_versions.mix(DEMO_REPORT.out.versions)

    emit:
    report   = DEMO_REPORT.out.html
    mask     = SEGMENT_SLIDE.out.mask
    gef      = CGEF.out.gef
    versions = ch_versions
}
