"""Drives a KServe v2 endpoint with Triton's own HTTP client (tritonclient, from PyPI), as a user
would, and prints what it saw as JSON: readiness, metadata, and which version answered each
inference, in binary and in JSON tensor encoding.

    triton_client.py HOST:PORT MODEL REQUESTS [json]

With `json`, every tensor travels as JSON (for servers without the binary tensor extension, such as
MLServer); otherwise requests alternate between binary and JSON.
"""
import json
import sys

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

url, model, requests = sys.argv[1], sys.argv[2], int(sys.argv[3])
json_only = len(sys.argv) > 4 and sys.argv[4] == "json"
client = httpclient.InferenceServerClient(url=url)
metadata = client.get_model_metadata(model)
server = client.get_server_metadata()
report = {
    "serverExtensions": server["extensions"],
    "serverReady": client.is_server_ready(),
    "modelReady": client.is_model_ready(model),
    "inputShape": metadata["inputs"][0]["shape"],
    "outputShape": metadata["outputs"][0]["shape"],
    "versions": {},
    "scores": {},
}
features = np.array([0.5, -1.0, 2.0], dtype=np.float64)
for index in range(requests):
    binary = index % 2 == 0 and not json_only
    tensor = httpclient.InferInput("features", list(features.shape), "FP64")
    tensor.set_data_from_numpy(features, binary_data=binary)
    output = httpclient.InferRequestedOutput("score", binary_data=binary)
    result = client.infer(model, [tensor], outputs=[output], request_id=f"req-{index}")
    response = result.get_response()
    version = response["model_version"]
    assert response["id"] == f"req-{index}", response
    report["versions"][version] = report["versions"].get(version, 0) + 1
    score = float(np.ravel(result.as_numpy("score"))[0])
    # The same version answers the same features the same way, in either encoding.
    report["scores"].setdefault(version, set()).add(round(score, 12))
report["scores"] = {version: sorted(scores) for version, scores in report["scores"].items()}
# Servers differ here: an unknown model is "not ready" to some and an error to others (MLServer).
try:
    report["unknownModelReady"] = client.is_model_ready("no-such-model")
except InferenceServerException as error:
    report["unknownModelReady"] = str(error.status())
print(json.dumps(report, sort_keys=True))
