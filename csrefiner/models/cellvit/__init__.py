"""CellViT (Hörst et al. 2024) in plain torch: ViT encoder, U-Net-style decoder, HoVer-Net post-processing.

- `vit.py`: the two encoder families of the published models - ViT-256 (HIPT's ViT-S/16, class token, 1D
  position embedding) and SAM image encoders (ViT-B/L/H/16, windowed + global attention, relative positions).
- `decoder.py`: the shared skip decoders and the three upsampling branches (nuclei probability, HV maps, types).
- `targets.py`: HV distance maps from instance labels. `losses.py`: the published loss mix.
- `postprocess.py`: HV gradients -> energy and markers -> marker-controlled watershed -> uint32 instances.
- `config.py`: architectures as dicts - published presets, `--option` overrides, and what a state dict's shapes imply.
- `checkpoint.py`: reading published / csrefiner .pth files (weights_only), key mapping, strict loading.

Module names follow the published state dicts, so their keys load one to one (after prefix mapping).
"""
