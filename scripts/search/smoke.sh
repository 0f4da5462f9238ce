#!/usr/bin/env bash
# Smoke test against a running node: smoke.sh <url>
# GET / for the version, create index with mapping, index with refresh, GET, _bulk with
# external_gte versions, _search, scripted _update (when painless is loaded), local _reindex
# (when the reindex module is loaded), scroll, a best_compression index, snapshot into an fs
# repository under path.repo;
# on Elasticsearch 8+ also the X-Elastic-Product header and the REST compatibility media type
# (compatible-with=<major>, and compatible-with=8 on 9).
# Exits non-zero on the first unexpected answer. Works for ES 5.6 / 6.8 / 7.x / 8.x / 9.x and
# OpenSearch 1.x / 2.x / 3.x.
set -euo pipefail
U="${1:?usage: smoke.sh <url>}"
U="${U%/}"
J='content-type: application/json'
IDX="smoke-$$-$RANDOM"
fail() { echo "FAIL: $*" >&2; exit 1; }
req() { # method path [body] -> prints body, fails on HTTP >= 400 unless ALLOW_ERR=1
    local m="$1" p="$2" body="${3-}" out code
    if [[ -n "$body" ]]; then
        out="$(curl -sS -m 60 -X "$m" "$U$p" -H "$J" --data-binary "$body" -w '\n%{http_code}')"
    else
        out="$(curl -sS -m 60 -X "$m" "$U$p" -w '\n%{http_code}')"
    fi
    code="${out##*$'\n'}"
    out="${out%$'\n'*}"
    printf '%s\n' "$out"
    if [[ "${ALLOW_ERR:-0}" != 1 && "$code" -ge 400 ]]; then fail "$m $p -> HTTP $code"; fi
}
expect() { [[ "$1" == *"$2"* ]] || fail "expected '$2' in: $1"; }

root="$(req GET /)"
num="$(printf '%s' "$root" | sed -n 's/.*"number" *: *"\([^"]*\)".*/\1/p' | head -n1)"
dist="$(printf '%s' "$root" | grep -q '"distribution" *: *"opensearch"' && echo opensearch || echo elasticsearch)"
major="${num%%.*}"
[[ "$major" =~ ^[0-9]+$ ]] || fail "no version number in GET /: $root"
[[ "$dist" == opensearch ]] && major=7 # OpenSearch speaks the 7.x typeless API
echo "GET / -> $dist $num"

props='{"properties":{"title":{"type":"text"},"n":{"type":"long"},"tag":{"type":"keyword"}}}'
settings='{"number_of_shards":1,"number_of_replicas":0}'
case "$major" in
5) T=doc; create="{\"settings\":$settings,\"mappings\":{\"doc\":$props}}"; cq="" ;;
6) T=_doc; create="{\"settings\":$settings,\"mappings\":$props}"; cq="?include_type_name=false" ;;
*) T=_doc; create="{\"settings\":$settings,\"mappings\":$props}"; cq="" ;;
esac

expect "$(req PUT "/$IDX$cq" "$create")" '"acknowledged":true'
echo "create index with mapping: ok"

expect "$(req PUT "/$IDX/$T/1?refresh=true" '{"title":"hello world","n":1,"tag":"a"}')" '"result":"created"'
echo "index doc ?refresh=true: ok"

expect "$(req GET "/$IDX/$T/1")" '"found":true'
echo "GET doc: ok"

typ=""
[[ "$major" -lt 7 ]] && typ=",\"_type\":\"$T\""
bulk="$(printf '%s\n' \
    "{\"index\":{\"_index\":\"$IDX\"$typ,\"_id\":\"2\",\"version\":5,\"version_type\":\"external_gte\"}}" \
    '{"title":"second doc","n":2,"tag":"b"}' \
    "{\"index\":{\"_index\":\"$IDX\"$typ,\"_id\":\"2\",\"version\":5,\"version_type\":\"external_gte\"}}" \
    '{"title":"second doc again","n":3,"tag":"b"}' \
    "{\"index\":{\"_index\":\"$IDX\"$typ,\"_id\":\"2\",\"version\":4,\"version_type\":\"external_gte\"}}" \
    '{"title":"stale","n":0,"tag":"b"}')"
out="$(curl -sS -m 60 -X POST "$U/_bulk?refresh=true" -H 'content-type: application/x-ndjson' --data-binary "$bulk"$'\n')"
expect "$out" '"status":201'
expect "$out" '"status":200'
expect "$out" '"status":409'
echo "_bulk external_gte (201, 200 same version, 409 older version): ok"

if [[ "$dist" == elasticsearch && "$major" -ge 8 ]]; then
    # REST API compatibility: the vendor media type with compatible-with=<major> (and the previous
    # major) is accepted and echoed, and every answer carries X-Elastic-Product.
    for cw in "$major" $((major - 1)); do
        [[ "$cw" -ge 8 ]] || continue
        mt="application/vnd.elasticsearch+json;compatible-with=$cw"
        tmpb="$(mktemp)"
        hdrs="$(curl -sS -m 60 -D - -o "$tmpb" -X GET "$U/$IDX/_doc/1" -H "Accept: $mt" -H "Content-Type: $mt")"
        body="$(cat "$tmpb")"
        rm -f "$tmpb"
        expect "$hdrs" " 200"
        expect "$(printf '%s' "$hdrs" | tr 'A-Z' 'a-z')" "content-type: application/vnd.elasticsearch+json;compatible-with=$cw"
        expect "$body" '"found":true'
    done
    expect "$(printf '%s' "$hdrs" | tr 'A-Z' 'a-z')" 'x-elastic-product: elasticsearch'
    echo "REST compatibility media type (compatible-with=$major$([[ $major -ge 9 ]] && echo ", 8")), X-Elastic-Product: ok"
fi

out="$(req POST "/$IDX/_search" '{"query":{"match":{"title":"second"}}}')"
expect "$out" '"_id":"2"'
expect "$out" '"n":3'
echo "_search: ok"

plugins="$(req GET '/_nodes/plugins')"
if [[ "$plugins" == *PainlessPlugin* || "$plugins" == *PainlessModulePlugin* || "$plugins" == *'"lang-painless"'* ]]; then
    if [[ "$major" -ge 7 ]]; then up="/$IDX/_update/1?refresh=true"; else up="/$IDX/$T/1/_update?refresh=true"; fi
    expect "$(req POST "$up" '{"script":{"source":"ctx._source.n += params.k","lang":"painless","params":{"k":41}}}')" '"result":"updated"'
    expect "$(req GET "/$IDX/$T/1")" '"n":42'
    echo "scripted _update (painless): ok"
    echo "scripts: yes"
else
    out="$(ALLOW_ERR=1 req POST "/$IDX/_update/1" '{"script":{"source":"ctx._source.n += 1","lang":"painless"}}' || true)"
    echo "scripts: no (painless not loaded)"
fi

if [[ "$plugins" == *ReindexPlugin* || "$plugins" == *ReindexModulePlugin* || "$plugins" == *'"reindex"'* ]]; then
    expect "$(req POST "/_reindex?refresh=true" "{\"source\":{\"index\":\"$IDX\"},\"dest\":{\"index\":\"$IDX-copy\"}}")" '"created":2'
    expect "$(req GET "/$IDX-copy/_count")" '"count":2'
    echo "_reindex (local): ok"
    req DELETE "/$IDX-copy" >/dev/null
else
    echo "_reindex: no (reindex module not loaded)"
fi

out="$(req POST "/$IDX/_search?scroll=1m" '{"size":1,"sort":["_doc"]}')"
sid="$(printf '%s' "$out" | sed -n 's/.*"_scroll_id" *: *"\([^"]*\)".*/\1/p')"
[[ -n "$sid" ]] || fail "no _scroll_id in: $out"
expect "$(req POST /_search/scroll "{\"scroll\":\"1m\",\"scroll_id\":\"$sid\"}")" '"hits"'
ALLOW_ERR=1 req DELETE /_search/scroll "{\"scroll_id\":\"$sid\"}" >/dev/null
echo "scroll: ok"

# best_compression: zstd stored fields on Elasticsearch 8.14+ (native libzstd), DEFLATE elsewhere
expect "$(req PUT "/$IDX-bc$cq" "{\"settings\":{\"number_of_shards\":1,\"number_of_replicas\":0,\"index.codec\":\"best_compression\"}}")" '"acknowledged":true'
expect "$(req PUT "/$IDX-bc/$T/1?refresh=true" '{"title":"compressed","n":7}')" '"result":"created"'
req POST "/$IDX-bc/_flush?force=true" >/dev/null
expect "$(req GET "/$IDX-bc/$T/1")" '"n":7'
req DELETE "/$IDX-bc" >/dev/null
echo "index.codec=best_compression (write, refresh, flush, read): ok"

expect "$(req PUT "/_snapshot/smoke-$$" '{"type":"fs","settings":{"location":"smoke-repo"}}')" '"acknowledged":true'
expect "$(req PUT "/_snapshot/smoke-$$/s1?wait_for_completion=true" "{\"indices\":\"$IDX\"}")" '"state":"SUCCESS"'
req DELETE "/_snapshot/smoke-$$/s1" >/dev/null
req DELETE "/_snapshot/smoke-$$" >/dev/null
echo "snapshot to fs repository (path.repo): ok"

req DELETE "/$IDX" >/dev/null
echo "smoke: all ok ($dist $num)"
