"""Kubeflow: what the pipeline needs from a cluster, and how a run gets there.

- :mod:`alpr.kubeflow.platform` -- each task's Kubernetes needs (Secrets, ConfigMap, PVC, resources) via kfp-kubernetes.
- :mod:`alpr.kubeflow.options` -- submission options: flags, config file, environment.
- :mod:`alpr.kubeflow.auth` -- the KFP client: in-cluster token, bearer tokens, the Dex login form.
- :mod:`alpr.kubeflow.submit` -- compile, upload a pipeline version, start or schedule a run, follow it.
- :mod:`alpr.kubeflow.kserve` -- the KServe InferenceService: its body, create / merge-patch through the Kubernetes
  API (with retries), ``DeploySettings``.
- :mod:`alpr.kubeflow.trainjob` -- a distributed Train as a Kubeflow Trainer v2 ``TrainJob``: its body from the step's
  own pod, create / follow / cancel through the Kubernetes API.
"""
