# Sourced (never run) at the top of every csrefiner module's script: `source task_home.sh`.
#
# Points HOME and the caches the tools write (matplotlib, numba, Cellpose and Keras weights) into the task
# folder: the images run as any user (docker -u $(id -u):$(id -g)) with a read-only filesystem, and a task must
# not share its caches with other tasks. FINETUNE and SEGMENT then link --model_cache into $HOME, so the
# weights it holds land exactly in $CELLPOSE_LOCAL_MODELS_PATH and $KERAS_HOME.
#
# Why a file in bin/ and not `process.beforeScript`: beforeScript runs in .command.run on the host, before the
# container starts, and `docker run` does not pass the host's environment in, so exports made there never
# reach a -profile docker task. Nextflow puts the pipeline's bin/ on the task's PATH everywhere instead: it is
# mounted into docker/singularity/apptainer containers, uploaded for cloud executors and used as it is by the
# local executor; bash's `source` looks the file up on PATH, so the module scripts need no path to it and the
# images need no copy of it (TEST_GEM's bin/make_test_gem.py reaches the base image the same way).
if ! (return 0 2>/dev/null); then
    echo "task_home.sh sets the calling shell's environment: source it, do not run it" >&2
    exit 1
fi
export HOME="$PWD/.home" MPLCONFIGDIR="$PWD/.home/matplotlib" NUMBA_CACHE_DIR="$PWD/.home/numba"
export CELLPOSE_LOCAL_MODELS_PATH="$PWD/.home/cellpose" KERAS_HOME="$PWD/.home/keras"
mkdir -p "$MPLCONFIGDIR" "$NUMBA_CACHE_DIR" "$CELLPOSE_LOCAL_MODELS_PATH" "$KERAS_HOME"
