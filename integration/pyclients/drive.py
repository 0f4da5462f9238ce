"""Drives a gateway with an official Python client, as an application would.

    python drive.py --client NAME --url GATEWAY_URL --index INDEX

NAME is the client the interpreter has installed (scripts/pyclients.sh
NAME): elasticsearch7, elasticsearch8 or opensearch2. With sniffing off (a
sniffing client would bypass the gateway and talk to the nodes it lists),
it writes INDEX through the gateway with the client's bulk helpers
(helpers.bulk, helpers.streaming_bulk, helpers.parallel_bulk: explicit and
automatic ids, index, create, update and delete actions) and single-document
calls (index, create, update, upsert, delete, and the conflicts the server
answers), then reads everything back with helpers.scan and checks it is
exactly what was written.

It prints a JSON summary on stdout; `documents` is how many the index holds
at the end. Any client error, or anything read back that differs from what
was written, ends it with a message on stderr and exit status 1.
"""

import argparse
import json
import sys
import traceback
from typing import Any, Callable, Dict, Iterable, List, Set

EXPLICIT_BULK = 200  # helpers.bulk: bulk-0 ... bulk-199
AUTO_BULK = 100  # helpers.bulk: documents without an _id
STREAMED = 80  # helpers.streaming_bulk: stream-0 ... stream-79
AUTO_STREAMED = 20  # helpers.streaming_bulk: documents without an _id
UPDATED = range(0, 10)  # bulk-0 ... bulk-9 updated by streaming_bulk
DELETED = range(10, 20)  # bulk-10 ... bulk-19 deleted by streaming_bulk
PARALLEL = 100  # helpers.parallel_bulk: parallel-0 ... parallel-99, created


class Failure(Exception):
    """What was read back or answered is not what the driver expects."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise Failure(message)


class Client:
    """One official client and its helpers, behind the few calls used here.

    elasticsearch-py 7.15+ and 8.x take request bodies as keyword arguments
    (`document`, `doc`, `settings`; 7.x warns about `body`); opensearch-py
    takes them as `body`.
    """

    def __init__(self, name: str, url: str) -> None:
        self.name = name
        if name == "elasticsearch7":
            import elasticsearch
            from elasticsearch import Elasticsearch, helpers

            self.module, self.helpers = elasticsearch, helpers
            self.client = Elasticsearch(
                [url],
                sniff_on_start=False,
                sniff_on_connection_fail=False,
                sniffer_timeout=None,
                max_retries=0,
                timeout=30,
            )
            self.keywords = True
        elif name == "elasticsearch8":
            import elasticsearch
            from elasticsearch import Elasticsearch, helpers

            self.module, self.helpers = elasticsearch, helpers
            self.client = Elasticsearch(
                url,
                sniff_on_start=False,
                sniff_before_requests=False,
                sniff_on_node_failure=False,
                max_retries=0,
                request_timeout=30,
            )
            self.keywords = True
        elif name == "opensearch2":
            import opensearchpy
            from opensearchpy import OpenSearch, helpers

            self.module, self.helpers = opensearchpy, helpers
            self.client = OpenSearch(
                [url],
                sniff_on_start=False,
                sniff_on_connection_fail=False,
                sniffer_timeout=None,
                max_retries=0,
                timeout=30,
            )
            self.keywords = False
        else:
            raise Failure(f"unknown client {name}")
        major = name[-1]
        self.version = self.module.__versionstr__
        check(
            self.version.startswith(major + "."),
            f"{name} wanted, but this interpreter has {self.module.__name__} {self.version}",
        )

    def create_index(self, index: str, settings: Dict[str, Any], mappings: Dict[str, Any]) -> Any:
        if self.keywords:
            return self.client.indices.create(index=index, settings=settings, mappings=mappings)
        return self.client.indices.create(
            index=index, body={"settings": settings, "mappings": mappings}
        )

    def index(self, index: str, document: Dict[str, Any], id: Any = None) -> Any:
        if self.keywords:
            return self.client.index(index=index, id=id, document=document)
        return self.client.index(index=index, id=id, body=document)

    def create(self, index: str, id: str, document: Dict[str, Any]) -> Any:
        if self.keywords:
            return self.client.create(index=index, id=id, document=document)
        return self.client.create(index=index, id=id, body=document)

    def update(self, index: str, id: str, doc: Dict[str, Any], upsert: bool = False) -> Any:
        if self.keywords:
            return self.client.update(index=index, id=id, doc=doc, doc_as_upsert=upsert)
        return self.client.update(index=index, id=id, body={"doc": doc, "doc_as_upsert": upsert})

    def expect_error(self, error: str, call: Callable[[], Any]) -> int:
        """Runs `call`, which must raise the client's `error` exception;
        returns its HTTP status."""
        expected = getattr(self.module, error)
        try:
            answer = call()
        except expected as e:
            return int(getattr(getattr(e, "meta", None), "status", None) or e.status_code)
        raise Failure(f"expected {error}, got {answer}")


def doc(kind: str, n: int) -> Dict[str, Any]:
    return {"kind": kind, "n": n, "text": f"{kind} document {n}"}


def run(client: Client, index: str) -> Dict[str, Any]:
    es = client.client
    info = es.info()
    server = info["version"]
    summary: Dict[str, Any] = {
        "client": client.name,
        "client_version": client.version,
        "server": {
            "distribution": server.get("distribution", "elasticsearch"),
            "number": server["number"],
        },
    }
    meta = getattr(info, "meta", None)
    if meta is not None:  # elasticsearch-py 8 refuses servers without it
        summary["x_elastic_product"] = meta.headers.get("x-elastic-product")

    client.create_index(
        index,
        {"number_of_shards": 2, "number_of_replicas": 0},
        {
            "properties": {
                "kind": {"type": "keyword"},
                "n": {"type": "long"},
                "text": {"type": "text"},
            }
        },
    )
    known: Set[str] = set()  # ids that must be there at the end
    gone: Set[str] = set()  # ids that must not

    # helpers.bulk: explicit ids, then documents the server names.
    actions: List[Dict[str, Any]] = [
        {"_index": index, "_id": f"bulk-{i}", "_source": doc("bulk", i)} for i in range(EXPLICIT_BULK)
    ]
    actions += [{"_index": index, "_source": doc("bulk-auto", i)} for i in range(AUTO_BULK)]
    ok, errors = client.helpers.bulk(es, actions, chunk_size=64)
    check(ok == len(actions) and not errors, f"helpers.bulk: {ok} ok, errors {errors}")
    known.update(f"bulk-{i}" for i in range(EXPLICIT_BULK))
    summary["bulk"] = ok

    # helpers.streaming_bulk: every action type, several requests.
    stream: List[Dict[str, Any]] = [
        {"_index": index, "_id": f"stream-{i}", "_source": doc("stream", i)} for i in range(STREAMED)
    ]
    stream += [{"_index": index, "_source": doc("stream-auto", i)} for i in range(AUTO_STREAMED)]
    stream += [
        {"_op_type": "update", "_index": index, "_id": f"bulk-{i}", "doc": {"updated": True}}
        for i in UPDATED
    ]
    stream += [{"_op_type": "delete", "_index": index, "_id": f"bulk-{i}"} for i in DELETED]
    results: Dict[str, int] = {}
    for accepted, item in client.helpers.streaming_bulk(es, stream, chunk_size=25):
        ((op, result),) = item.items()
        check(accepted, f"streaming_bulk item refused: {item}")
        results[op] = results.get(op, 0) + 1
        if op == "index":
            known.add(result["_id"])
    check(
        results == {"index": STREAMED + AUTO_STREAMED, "update": len(UPDATED), "delete": len(DELETED)},
        f"streaming_bulk answered {results}",
    )
    gone.update(f"bulk-{i}" for i in DELETED)
    known.difference_update(gone)
    summary["streaming_bulk"] = results

    # helpers.parallel_bulk: create actions from two threads at once.
    created = 0
    for accepted, item in client.helpers.parallel_bulk(
        es,
        ({"_op_type": "create", "_index": index, "_id": f"parallel-{i}", "_source": doc("parallel", i)} for i in range(PARALLEL)),
        thread_count=2,
        chunk_size=20,
    ):
        check(accepted and "create" in item, f"parallel_bulk item refused: {item}")
        created += 1
    check(created == PARALLEL, f"parallel_bulk created {created} of {PARALLEL}")
    known.update(f"parallel-{i}" for i in range(PARALLEL))
    summary["parallel_bulk"] = created

    # Single-document calls, and the errors a client must see.
    single: Dict[str, Any] = {}
    answer = client.index(index, doc("single", 1), id="single-index")
    check(answer["result"] == "created", f"index: {answer}")
    answer = client.index(index, doc("single", 2), id="single-index")
    check(answer["result"] == "updated" and answer["_version"] == 2, f"index again: {answer}")
    answer = client.index(index, doc("single-auto", 3))
    check(answer["result"] == "created", f"index without id: {answer}")
    known.add(answer["_id"])
    answer = client.create(index, "single-create", doc("single", 4))
    check(answer["result"] == "created", f"create: {answer}")
    single["create_conflict"] = client.expect_error(
        "ConflictError", lambda: client.create(index, "single-create", doc("single", 5))
    )
    answer = client.update(index, "single-create", {"updated": True})
    check(answer["result"] == "updated", f"update: {answer}")
    answer = client.update(index, "single-upsert", {"kind": "upsert", "n": 6}, upsert=True)
    check(answer["result"] == "created", f"upsert: {answer}")
    single["update_missing"] = client.expect_error(
        "NotFoundError", lambda: client.update(index, "single-missing", {"n": 7})
    )
    answer = es.delete(index=index, id="single-index")
    check(answer["result"] == "deleted", f"delete: {answer}")
    single["delete_missing"] = client.expect_error(
        "NotFoundError", lambda: es.delete(index=index, id="single-index")
    )
    known.update(["single-create", "single-upsert"])
    gone.update(["single-index", "single-missing"])
    summary["single"] = single

    # Everything back through the gateway.
    es.indices.refresh(index=index)
    scanned: Dict[str, Dict[str, Any]] = {}
    for hit in client.helpers.scan(es, index=index, query={"query": {"match_all": {}}}, size=50):
        check(hit["_id"] not in scanned, f"scan returned {hit['_id']} twice")
        scanned[hit["_id"]] = hit["_source"]
    expected = len(known) + AUTO_BULK
    check(len(scanned) == expected, f"scan read {len(scanned)} documents, {expected} were written")
    check(known <= scanned.keys(), f"scan misses {sorted(known - scanned.keys())[:20]}")
    check(not gone & scanned.keys(), f"scan returns deleted {sorted(gone & scanned.keys())}")
    auto = [s for s in scanned.values() if s["kind"] == "bulk-auto"]
    check(len(auto) == AUTO_BULK, f"scan read {len(auto)} of {AUTO_BULK} bulk documents without an id")
    for id in [f"bulk-{i}" for i in UPDATED] + ["single-create"]:
        check(scanned[id].get("updated") is True, f"{id} lacks its update: {scanned[id]}")
    count = es.count(index=index)["count"]
    check(count == expected, f"count says {count}, scan read {expected}")
    summary["scanned"] = len(scanned)
    summary["documents"] = expected
    return summary


def main(argv: Iterable[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--client", required=True, choices=["elasticsearch7", "elasticsearch8", "opensearch2"])
    parser.add_argument("--url", required=True, help="the gateway, e.g. http://127.0.0.1:9200")
    parser.add_argument("--index", required=True, help="a new index to write")
    args = parser.parse_args(list(argv))
    try:
        summary = run(Client(args.client, args.url), args.index)
    except Exception as e:  # any client error fails the run, loudly
        traceback.print_exc()
        print(f"drive.py ({args.client} via {args.url}): FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
