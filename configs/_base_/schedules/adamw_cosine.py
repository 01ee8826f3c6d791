# AdamW with linear warm-up then cosine decay, by epoch. Epochs and lr are set by the pipeline's parameters.
max_epochs = 60
base_lr = 0.002
train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=max_epochs, val_interval=10)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=base_lr, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0, bias_decay_mult=0, bypass_duplicate=True),
    clip_grad=dict(max_norm=10.0),
)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.01, by_epoch=False, begin=0, end=200),
    dict(type="CosineAnnealingLR", eta_min=base_lr * 0.05, begin=1, end=max_epochs, T_max=max_epochs - 1,
         by_epoch=True, convert_to_iter_based=True),
]
auto_scale_lr = dict(enable=False, base_batch_size=8)
