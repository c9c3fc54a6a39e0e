"""A gRPC server and a gRPC client from grpcio (PyPI), to test Sluice's HTTP/2 proxy with peers nobody
here wrote. Messages are raw bytes (no protobuf schema needed): the service `sluice.test.Echo` has

    Say   (unary)            answers NAME:REQUEST
    Chat  (bidi streaming)   answers NAME:MESSAGE for each message, as it arrives
    Fail  (unary)            fails with INTERNAL

    grpc_peer.py server NAME [--fail]  prints "listening on PORT", serves until killed; with --fail,
                                       Say fails with INTERNAL too (a broken version)
    grpc_peer.py client HOST:PORT N    N Say calls, one Chat of three messages and one Fail; prints JSON
    grpc_peer.py load HOST:PORT N      N Say calls, 20 ms apart; prints the count of each status code
"""
import json
import sys
import time
from concurrent import futures

import grpc


def serve(name, failing):
    def say(request, context):
        if failing:
            context.abort(grpc.StatusCode.INTERNAL, "this version is broken")
        return name.encode() + b":" + request

    def chat(requests, context):
        for message in requests:
            yield name.encode() + b":" + message

    def fail(request, context):
        context.abort(grpc.StatusCode.INTERNAL, "failing on purpose")

    handler = grpc.method_handlers_generic_handler("sluice.test.Echo", {
        "Say": grpc.unary_unary_rpc_method_handler(say),
        "Chat": grpc.stream_stream_rpc_method_handler(chat),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
    })
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"listening on {port}", flush=True)
    server.wait_for_termination()


def drive(target, count):
    channel = grpc.insecure_channel(target)
    say = channel.unary_unary("/sluice.test.Echo/Say")
    report = {"answers": {}, "metadata": []}
    for index in range(count):
        answer, call = say.with_call(f"m{index}".encode(), timeout=20)
        name, _, echoed = answer.decode().partition(":")
        assert echoed == f"m{index}", answer
        report["answers"][name] = report["answers"].get(name, 0) + 1
        if index == 0:
            report["metadata"] = sorted(key for key, _ in call.initial_metadata())
    chat = channel.stream_stream("/sluice.test.Echo/Chat")
    report["chat"] = [reply.decode() for reply in chat(iter([b"a", b"b", b"c"]), timeout=20)]
    try:
        channel.unary_unary("/sluice.test.Echo/Fail")(b"x", timeout=20)
        report["fail"] = "OK"
    except grpc.RpcError as error:
        report["fail"] = error.code().name
    try:
        channel.unary_unary("/no.such.Service/Call")(b"x", timeout=20)
        report["unrouted"] = "OK"
    except grpc.RpcError as error:
        report["unrouted"] = error.code().name
    print(json.dumps(report, sort_keys=True))


def load(target, count):
    channel = grpc.insecure_channel(target)
    say = channel.unary_unary("/sluice.test.Echo/Say")
    codes = {}
    for index in range(count):
        try:
            say(b"x", timeout=20)
            code = "OK"
        except grpc.RpcError as error:
            code = error.code().name
        codes[code] = codes.get(code, 0) + 1
        time.sleep(0.02)
    print(json.dumps(codes, sort_keys=True))


if __name__ == "__main__":
    if sys.argv[1] == "server":
        serve(sys.argv[2], "--fail" in sys.argv[3:])
    elif sys.argv[1] == "load":
        load(sys.argv[2], int(sys.argv[3]))
    else:
        drive(sys.argv[2], int(sys.argv[3]))
