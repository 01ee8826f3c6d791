# Runtime shared by every ALPR config: CPU-friendly logging, checkpoints, TensorBoard.
# Set by alpr.model.training.build_config, so not here: the checkpoint hook's interval (the pipeline's
# val_interval), save_best and rule (the val EIR, greater is better); randomness (the pipeline's seed); the
# visualizer's name (unique per run); work_dir.
default_scope = "mmdet"
custom_imports = dict(imports=["alpr.model.plugins"], allow_failed_imports=False)

default_hooks = dict(
    timer=dict(type="IterTimerHook"),
    logger=dict(type="LoggerHook", interval=10),
    param_scheduler=dict(type="ParamSchedulerHook"),
    # Candidate checkpoints for Evaluate: keep the last few; Evaluate selects by its metric (EIR by default).
    checkpoint=dict(type="CheckpointHook", max_keep_ckpts=3, save_last=True),
    sampler_seed=dict(type="DistSamplerSeedHook"),
    # Draws every 10th val batch's first image with its predictions (score >= 0.3) into TensorBoard's IMAGES tab.
    visualization=dict(type="DetVisualizationHook", draw=True, interval=10, score_thr=0.3),
)
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
               dist_cfg=dict(backend="gloo"))
vis_backends = [dict(type="LocalVisBackend"), dict(type="TensorboardVisBackend")]
visualizer = dict(type="DetLocalVisualizer", vis_backends=vis_backends)
log_processor = dict(type="LogProcessor", window_size=10, by_epoch=True)
log_level = "INFO"
load_from = None
resume = False
