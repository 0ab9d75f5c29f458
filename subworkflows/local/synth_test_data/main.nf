/*
 * -profile test: generated annotated patches and a generated "slide" with a GEM matrix, all made in the run
 * (csrefiner synth and bin/make_test_gem.py), so the test needs no download. Emits samplesheet-shaped rows.
 */
include { SYNTH } from '../../../modules/synth/main'
include { TEST_GEM } from '../../../modules/test_gem/main'

workflow SYNTH_TEST_DATA {
    take:
    n_patches    // annotated patches to generate
    patch_size   // their side, px
    slide_size   // the slide's side, px
    style        // synth style (easy / hard)

    main:
    SYNTH(channel.of(
        [id: 'patches', n: n_patches, size: patch_size, style: style, seed: 1],
        [id: 'slideA', n: 1, size: slide_size, style: style, seed: 7],
    ))
    ch_patches = SYNTH.out.dir.filter { meta, _dir -> meta.id == 'patches' }.map { _meta, dir -> dir }
    ch_slide = SYNTH.out.images
        .filter { meta, _image -> meta.id == 'slideA' }
        .map { meta, image -> [[id: meta.id, size: meta.size], image] }
    TEST_GEM(ch_slide.map { meta, _image -> meta })

    ch_samples = ch_slide
        .join(TEST_GEM.out.gem)
        .combine(ch_patches)
        .map { meta, image, gem, patches -> [[id: meta.id], image, gem, patches] }

    emit:
    samples  = ch_samples   // [meta, image, matrix, patch folder]
    versions = SYNTH.out.versions.mix(TEST_GEM.out.versions)
}
