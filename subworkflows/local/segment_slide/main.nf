/*
 * Whole slide -> TILE -> SEGMENT one task per batch of tiles (spread over GPUs) -> regroup each slide's
 * batches with groupKey (the batch count is known, so STITCH starts as soon as a slide is complete) -> STITCH.
 */
include { TILE } from '../../../modules/tile/main'
include { SEGMENT as SEGMENT_TILES } from '../../../modules/segment/main'
include { STITCH } from '../../../modules/stitch/main'

workflow SEGMENT_SLIDE {
    take:
    ch_images       // [meta, slide image]
    ch_model        // value: [model meta, model folder or [] for a pretrained name]
    model_cache     // folder of pretrained weights, or []
    tiles_per_task  // tiles per segmentation task

    main:
    TILE(ch_images)

    ch_batches = TILE.out.tiles.flatMap { meta, tiles ->
        def batches = [tiles].flatten().sort { t -> t.name }.collate(tiles_per_task)
        batches.withIndex().collect { files, i ->
            [meta + [id: "${meta.id}.b${i}", slide: meta, batches: batches.size()], files]
        }
    }
    ch_segment = ch_batches
        .combine(ch_model)
        .map { meta, files, m, model -> [meta + [backend: m.backend, model_name: m.model_name], model, files] }
    SEGMENT_TILES(ch_segment, model_cache)

    ch_tile_masks = SEGMENT_TILES.out.masks
        .map { meta, masks -> [groupKey(meta.slide, meta.batches), masks] }
        .groupTuple()
        .map { key, masks -> [key.getGroupTarget(), masks.flatten().sort { f -> f.name }] }
    STITCH(TILE.out.manifest.join(ch_tile_masks))

    emit:
    mask     = STITCH.out.mask     // [meta, whole-slide uint32 mask]
    report   = STITCH.out.report   // [meta, stitch counts (JSON)]
    preview  = STITCH.out.preview  // [meta, PNG overview]
    versions = TILE.out.versions.mix(SEGMENT_TILES.out.versions, STITCH.out.versions)
}
