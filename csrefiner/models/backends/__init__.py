"""One file per model family, each defining `BACKEND` (a `csrefiner.models.base.Backend`)."""
