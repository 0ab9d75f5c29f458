/*
 * Small helpers shared by the csrefiner workflows: model specs, annotated patch pairs and the deterministic
 * train/validation split. Everything sorts by file name so reruns and -resume see identical task inputs.
 */

// `cellpose:cyto3,stardist:scratch,cellpose:/models/mine` -> one meta map per model
def parseModels(String spec) {
    def backends = ['cellpose', 'cpsam', 'cellvit', 'stardist', 'cellbin']  // trainable (not watershed)
    def defaults = [cellpose: 'cyto3', cpsam: 'cpsam', cellvit: 'CellViT-256-x40', stardist: '2D_versatile_fluo', cellbin: 'cellseg_bcdu_SHDI_221008_tf.hdf5']
    def models = spec.tokenize(',').collect { item -> item.trim() }.findAll { item -> item }.collect { item ->
        def parts = item.split(':', 2)
        def backend = parts[0]
        if (!(backend in backends)) {
            error("--models: unknown backend '${backend}' in '${item}'; use one of ${backends.join(', ')}")
        }
        def pretrained = parts.size() > 1 ? parts[1] : defaults[backend]
        def isPath = pretrained.contains('/')
        [
            id: backend,
            backend: backend,
            pretrained: isPath ? 'base_model' : pretrained,
            base_model: isPath ? file(pretrained, checkIfExists: true) : null,
            model_name: isPath ? null : pretrained,
        ]
    }
    if (!models) {
        error("--models is empty; give at least one backend, e.g. --models cellpose:cyto3")
    }
    def ids = models.collect { m -> m.id }
    if (ids.unique(false).size() != ids.size()) {
        error("--models lists a backend twice (${spec}); fine-tune each backend once per run")
    }
    return models
}

// CSRefiner-named patch pairs in a folder -> [[key, image, mask], ...] sorted by key
def patchPairs(patchDir) {
    def files = patchDir.listFiles().findAll { f -> f.name ==~ /.+-(img|mask)\.tiff?$/ }
    def byKey = files.groupBy { f -> f.name.replaceFirst(/-(img|mask)\.tiff?$/, '') }
    def lonely = byKey.findAll { _key, group -> group.size() != 2 }.keySet()
    if (lonely) {
        error("${patchDir}: patches without their image/mask partner: ${lonely.sort().take(5).join(', ')}")
    }
    return byKey.collect { key, group ->
        [key, group.find { f -> f.name.contains('-img.') }, group.find { f -> f.name.contains('-mask.') }]
    }.sort { pair -> pair[0] }
}

// Every n-th pair (by name) is held out; at least one pair on each side. -> [trainFiles, valFiles]
def splitPatches(List pairs, int every) {
    if (pairs.size() < 2) {
        error("need at least 2 annotated patches to fine-tune and validate, found ${pairs.size()}")
    }
    def sorted = pairs.sort(false) { pair -> pair[0] }
    def isVal = sorted.withIndex().collect { _pair, i -> every > 0 && (i % every) == every - 1 }
    if (!isVal.any()) {
        isVal[-1] = true
    }
    def train = []
    def val = []
    sorted.eachWithIndex { pair, i -> (isVal[i] ? val : train).addAll([pair[1], pair[2]]) }
    return [train, val]
}

// The demo's options for one step of one model: demo.json's step options plus the backend's knobs for it
def demoArgs(Map spec, String step, String backend) {
    return [spec.options[step], spec.backend_options[step]?.get(backend) ?: ''].join(' ').trim()
}

// The fine-tuned model with the highest macro F1 in an evaluation summary.json (ties: first by name), as
// csrefiner/demo/summary.py best_model chooses it
def bestModel(summaryJson, List ids) {
    def methods = new groovy.json.JsonSlurper().parseText(summaryJson.text).methods ?: [:]
    def best = null
    ids.sort(false).each { id ->
        def f1 = methods["${id}-finetuned"]?.macro?.f1 ?: 0  // a -stub run's summary is empty
        if (best == null || f1 > best[1]) {
            best = [id, f1]
        }
    }
    return best[0]
}
