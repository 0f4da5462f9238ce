#!/usr/bin/env python3
"""Snapshot on every node, restore on every other: the table of
docs/cross-version.md, section 6 (snapshot-based backfill).

    TANDEM_STATE=/tmp/st TANDEM_FLAVORS="es6 es7 es710 es8 os1 os2 os3" scripts/dev up
    TANDEM_STATE=/tmp/st scripts/search/snapshot-matrix.py "es6 es7 es710 es8 os1 os2 os3"

Needs the nodes started by `scripts/dev up` (they share $TANDEM_STATE/shared-repo
in path.repo). Leaves no index or repository behind on success.
"""
import json, os, sys, urllib.request
STATE=os.environ.get('TANDEM_STATE', os.path.join(os.path.dirname(__file__), '..', '..', '.tandem'))
SHARED=STATE+'/shared-repo'
flavors=sys.argv[1].split()
url={f:open(f'{STATE}/{f}/url').read().strip() for f in flavors}
def call(f, method, path, body=None):
    data=json.dumps(body).encode() if body is not None else None
    req=urllib.request.Request(url[f]+path, data=data, method=method, headers={'Content-Type':'application/json'})
    try:
        with urllib.request.urlopen(req, timeout=120) as r: return r.status, json.loads(r.read() or b'null')
    except urllib.error.HTTPError as e:
        b=e.read()
        try: return e.code, json.loads(b)
        except Exception: return e.code, b.decode()
ver={}
for f in flavors:
    s,b=call(f,'GET','/'); ver[f]=b['version'].get('distribution','elasticsearch')+' '+b['version']['number']
    idx=f'verify-{f}'
    call(f,'DELETE','/'+idx)
    call(f,'PUT','/'+idx,{'settings':{'number_of_shards':1,'number_of_replicas':0}})
    for i in range(3): call(f,'PUT',f'/{idx}/_doc/{i}?refresh=true',{'n':i})
    call(f,'PUT',f'/{idx}/_doc/1?refresh=true',{'n':11}); call(f,'PUT',f'/{idx}/_doc/1?refresh=true',{'n':111})
    s,b=call(f,'GET',f'/{idx}/_settings'); created=b[idx]['settings']['index']['version']['created']
    loc=f'{SHARED}/verify-{f}'
    s,b=call(f,'PUT','/_snapshot/verify-'+f,{'type':'fs','settings':{'location':loc}}); assert s==200,(f,b)
    call(f,'DELETE',f'/_snapshot/verify-{f}/s1')
    s,b=call(f,'PUT',f'/_snapshot/verify-{f}/s1?wait_for_completion=true',{'indices':idx,'include_global_state':False}); assert s==200,(f,b)
    print(f'source {f} ({ver[f]}): index.version.created={created}, snapshot {b["snapshot"]["state"]}', flush=True)
for src in flavors:
    for dst in flavors:
        if src==dst: continue
        repo=f'verify-from-{src}'
        s,b=call(dst,'PUT','/_snapshot/'+repo,{'type':'fs','settings':{'location':f'{SHARED}/verify-{src}','readonly':True}})
        if s!=200: print(f'{src} -> {dst}: repository refused {s} {json.dumps(b)[:300]}'); continue
        target=f'restored-{src}'
        call(dst,'DELETE','/'+target)
        s,b=call(dst,'POST',f'/_snapshot/{repo}/s1/_restore?wait_for_completion=true',{'indices':f'verify-{src}','rename_pattern':'verify-(.+)','rename_replacement':'restored-$1','include_global_state':False})
        if s!=200:
            r=b.get('error',{}).get('reason') if isinstance(b,dict) else b
            print(f'{src} ({ver[src]}) -> {dst} ({ver[dst]}): REFUSED {s}: {str(r)[:400]}', flush=True); continue
        call(dst,'GET',f'/_cluster/health/{target}?wait_for_status=yellow&timeout=30s')
        s,c=call(dst,'GET',f'/{target}/_count')
        s,d=call(dst,'GET',f'/{target}/_doc/1')
        print(f'{src} ({ver[src]}) -> {dst} ({ver[dst]}): RESTORED count={c.get("count")} doc1 _version={d.get("_version")} n={d.get("_source",{}).get("n")}', flush=True)
        call(dst,'DELETE','/'+target); call(dst,'DELETE','/_snapshot/'+repo)
for f in flavors:
    call(f,'DELETE',f'/_snapshot/verify-{f}/s1'); call(f,'DELETE',f'/_snapshot/verify-{f}'); call(f,'DELETE',f'/verify-{f}')
