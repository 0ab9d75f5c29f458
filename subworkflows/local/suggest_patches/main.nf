/*
 * Human in the loop: slide -> CROP into annotation-size patches -> SEGMENT them with every model ->
 * CONSENSUS (pseudo-labels where the models agree) and SUGGEST (the patches they disagree on most, with the
 * consensus as a starting mask) for the next annotation round.
 */
include { CROP } from '../../../modules/crop/main'
include { SEGMENT as SEGMENT_PATCHES } from '../../../modules/segment/main'
include { CONSENSUS } from '../../../modules/consensus/main'
include { SUGGEST } from '../../../modules/suggest/main'

workflow SUGGEST_PATCHES {
    take:
    ch_images    // [meta, slide image]
    ch_models    // [model meta, model folder or []], one per model
    n_models     // how many models segment each slide
    model_cache  // folder of pretrained weights, or []
    top          // how many patches to suggest per slide

    main:
    CROP(ch_images)

    ch_segment = CROP.out.images
        .combine(ch_models)
        .map { meta, images, m, model ->
            [meta + [id: "${meta.id}.${m.id}", slide: meta, backend: m.backend, model_name: m.model_name], model, images]
        }
    SEGMENT_PATCHES(ch_segment, model_cache)

    ch_preds = SEGMENT_PATCHES.out.dir
        .map { meta, dir -> [groupKey(meta.slide, n_models), dir] }
        .groupTuple()
        .map { key, dirs -> [key.getGroupTarget(), dirs.sort { d -> d.name }] }
    CONSENSUS(ch_preds)
    SUGGEST(ch_preds.join(CROP.out.images), top)

    emit:
    consensus = CONSENSUS.out.dir
    suggested = SUGGEST.out.dir
    versions  = CROP.out.versions.mix(SEGMENT_PATCHES.out.versions, CONSENSUS.out.versions, SUGGEST.out.versions)
}
