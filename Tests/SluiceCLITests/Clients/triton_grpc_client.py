"""Drives an Open Inference Protocol gRPC endpoint with Triton's own gRPC client (tritonclient.grpc,
from PyPI), as a user would, and prints what it saw as JSON: liveness, readiness, metadata, which
version answered each inference, and how an unknown model is refused.

    triton_grpc_client.py HOST:PORT MODEL REQUESTS
"""
import json
import sys

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

url, model, requests = sys.argv[1], sys.argv[2], int(sys.argv[3])
client = grpcclient.InferenceServerClient(url=url)
metadata = client.get_model_metadata(model)
report = {
    "serverLive": client.is_server_live(),
    "serverReady": client.is_server_ready(),
    "serverName": client.get_server_metadata().name,
    "modelReady": client.is_model_ready(model),
    "inputShape": list(metadata.inputs[0].shape),
    "outputShape": list(metadata.outputs[0].shape),
    "versions": {},
    "scores": {},
}
features = np.array([0.5, -1.0, 2.0], dtype=np.float64)
for index in range(requests):
    tensor = grpcclient.InferInput("features", list(features.shape), "FP64")
    tensor.set_data_from_numpy(features)
    result = client.infer(model, [tensor], outputs=[grpcclient.InferRequestedOutput("score")], request_id=f"req-{index}")
    response = result.get_response()
    assert response.id == f"req-{index}", response
    version = response.model_version
    report["versions"][version] = report["versions"].get(version, 0) + 1
    report["scores"].setdefault(version, set()).add(round(float(np.ravel(result.as_numpy("score"))[0]), 12))
report["scores"] = {version: sorted(scores) for version, scores in report["scores"].items()}
# Servers differ here: an unknown model is "not ready" to some and an error to others (MLServer).
try:
    report["unknownModelReady"] = client.is_model_ready("no-such-model")
except InferenceServerException as error:
    report["unknownModelReady"] = str(error.status())
try:
    client.infer("no-such-model", [tensor])
    report["unknownModelInfer"] = "answered"
except InferenceServerException as error:
    report["unknownModelInfer"] = str(error.status())
print(json.dumps(report, sort_keys=True))
