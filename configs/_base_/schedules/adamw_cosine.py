# AdamW with linear warm-up then cosine decay, by epoch.
# Set by alpr.model.training.build_config from the pipeline's parameters (alpr/defaults.py), so not here:
#   train_cfg max_epochs and val_interval; the optimizer's lr and weight_decay; the cosine decay's begin, end,
#   T_max and eta_min (from epoch 1 to the last, down to 5 % of lr).
train_cfg = dict(type="EpochBasedTrainLoop")
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="AdamW"),
    paramwise_cfg=dict(norm_decay_mult=0, bias_decay_mult=0, bypass_duplicate=True),
    clip_grad=dict(max_norm=10.0),
)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.01, by_epoch=False, begin=0, end=200),
    dict(type="CosineAnnealingLR", by_epoch=True, convert_to_iter_based=True),
]
auto_scale_lr = dict(enable=False, base_batch_size=8)
