#!/usr/bin/env nextflow
/*
 * csrefiner: fine-tune cell segmentation models on a few annotated patches, segment whole slides tile by tile,
 * stitch the tiles into one uint32 instance mask and build Stereo-seq cell-bin matrices.
 *
 *   nextflow run . -profile docker --input samplesheet.csv --outdir results [--models cellpose:cyto3,stardist]
 *   nextflow run . -profile test,docker --outdir results          (the demo on its generated slide: outdir/demo/report.html)
 *   nextflow run . -profile test_models,docker --outdir results   (the samplesheet workflow on generated data)
 */
include { validateParameters; paramsSummaryLog; samplesheetToList } from 'plugin/nf-schema'
include { SYNTH_TEST_DATA } from './subworkflows/local/synth_test_data'
include { CSREFINER } from './workflows/csrefiner'
include { DEMO } from './workflows/demo'
include { parseModels } from './subworkflows/local/utils_csrefiner'

workflow {
    if (params.validate_params) {
        validateParameters()
    }
    log.info(paramsSummaryLog(workflow))

    def models = parseModels(params.models)
    ch_model_cache = params.model_cache ? file(params.model_cache, checkIfExists: true) : []

    if (params.demo) {
        // the demo on its generated slide; it picks the best fine-tuned model for the slide (no --slide_model)
        DEMO(models, ch_model_cache, params.tiles_per_task)
    }
    else {
        def slideModel = params.slide_model ?: models[0].id
        if (!(slideModel in models.collect { m -> m.id })) {
            error("--slide_model ${slideModel} is not one of --models ${params.models}")
        }
        if (params.synth_test) {
            SYNTH_TEST_DATA(params.synth_patches, params.synth_patch_size, params.synth_slide_size, params.synth_style)
            ch_samples = SYNTH_TEST_DATA.out.samples
        }
        else {
            if (!params.input) {
                error("--input is missing: give a samplesheet CSV (sample,image,matrix,patches), or use -profile test (the demo) or test_models")
            }
            ch_samples = channel.fromList(samplesheetToList(params.input, "${projectDir}/assets/schema_input.json"))
        }
        def opts = [
            skip_finetune: params.skip_finetune,
            val_every: params.val_every,
            tiles_per_task: params.tiles_per_task,
            suggest_top: params.suggest_top,
        ]
        CSREFINER(ch_samples, models, slideModel, ch_model_cache, opts)
    }

    // software_versions.yml, one entry per process: every module sends [process, tool, version] (its `versions`
    // output, an eval() of the tool's --version) to the `versions` topic, so no process can be left out of it.
    // The workflows' `versions` emits carry the same tuples for a caller that embeds them.
    channel.topic('versions')
        .unique()
        .map { proc, tool, version -> [proc, "    ${tool}: ${version}"] }
        .groupTuple()
        .map { proc, tools -> "\"${proc}\":\n" + tools.sort().join('\n') + '\n' }
        .collectFile(name: 'software_versions.yml', storeDir: "${params.outdir}/pipeline_info", sort: true, newLine: false)
}
