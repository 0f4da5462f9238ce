//! The replay loop: reads the queue in order and applies every op to the
//! backup (document batches, read-repair, metadata requests, by-query
//! reconciliation), retrying what may succeed later.

use super::*;

impl<C: Cluster> Replication<C> {
    pub(super) async fn replay_loop(&self) {
        let mut reader = loop {
            match self.queue.reader(REPLAYER) {
                Ok(reader) => break reader,
                Err(err) => {
                    tracing::error!(error = %err, "cannot open the replay consumer; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        self.metrics.replay_paused.set(self.is_paused() as i64);
        loop {
            self.wait_while_paused().await;
            let mut paused = self.paused.subscribe();
            let batch = tokio::select! {
                batch = reader.next_batch(self.config.max_batch_ops, self.config.max_batch_bytes) => batch,
                _ = paused.wait_for(|p| *p) => continue,
            };
            match batch {
                Ok(records) => {
                    // Resolved per batch: a cutover may have swapped the
                    // backup while the replayer waited for records.
                    let target = match self.backup_target().await {
                        Ok(target) => target,
                        Err(err) => {
                            self.note_error(format!("backup unreachable: {err:#}"));
                            if let Err(err) = reader.seek_to_committed() {
                                tracing::error!(error = %err, "cannot rewind the replay consumer");
                            }
                            let _ = self
                                .pause_aware_sleep(Duration::from_millis(self.config.retry_max_ms))
                                .await;
                            continue;
                        }
                    };
                    let target = self.with_index_types(target, &records).await;
                    if let Err(Interrupted::Paused) =
                        self.apply_records(&mut reader, records, &target).await
                    {
                        // Re-read from the last acknowledgement on resume.
                        if let Err(err) = reader.seek_to_committed() {
                            tracing::error!(error = %err, "cannot rewind the replay consumer");
                        }
                    }
                    self.update_gauges();
                }
                Err(err @ QueueError::Corrupt { .. }) => {
                    let message = err.to_string();
                    tracing::error!(error = %message, "replayer halted on corrupt queue data; run a repair");
                    self.status.lock().halted = Some(message);
                    self.metrics.replay_halted.set(1);
                    let repaired = self.repaired.notified();
                    // Also poll: a repair may come from another handle.
                    let _ = tokio::time::timeout(Duration::from_secs(1), repaired).await;
                }
                Err(err) => {
                    self.note_error(format!("reading the queue: {err}"));
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// On a typed backup (5.x/6.x), adds the mapping type of every index
    /// the records write to, read once per index (`GET /{index}/_mapping`):
    /// a 6.x index holds one type, and documents recorded under another
    /// name (`doc` on a 5.x primary, `_doc` on 6.x+) must take it. An index
    /// that does not exist yet is asked again later.
    pub(super) async fn with_index_types(
        &self,
        mut target: ReplayTarget,
        records: &[crate::queue::Record],
    ) -> ReplayTarget {
        if !target.version.has_mapping_types() {
            return target;
        }
        let mut indices: Vec<String> = records
            .iter()
            .filter_map(|r| ReplicationOp::decode(&r.payload).ok())
            .filter(|op| DocKey::of(op).is_some())
            .filter_map(|op| op.index().map(|i| i.into_owned()))
            .collect();
        indices.sort();
        indices.dedup();
        for index in indices {
            let known = self.index_types.lock().get(&index).cloned();
            let doc_type = match known {
                Some(doc_type) => Some(doc_type),
                None => self.backup_index_type(&index).await,
            };
            if let Some(doc_type) = doc_type {
                self.index_types
                    .lock()
                    .insert(index.clone(), doc_type.clone());
                target = target.with_index_type(index, doc_type);
            }
        }
        target
    }

    /// The mapping type of `index` on the backup, when it exists and has
    /// one.
    async fn backup_index_type(&self, index: &str) -> Option<String> {
        let path = format!("/{}/_mapping", tandem_es::uri::encode_path_segment(index));
        let (status, body) = self
            .backup_request(&Method::GET, &path, Vec::new())
            .await
            .ok()?;
        if status != 200 {
            return None;
        }
        let answer: Value = serde_json::from_slice(&body).ok()?;
        answer
            .as_object()?
            .values()
            .next()?
            .get("mappings")?
            .as_object()?
            .keys()
            .find(|t| *t != "_default_")
            .cloned()
    }

    /// Applies every op of `records` in order, acknowledging as it goes.
    pub(super) async fn apply_records(
        &self,
        reader: &mut Reader,
        records: Vec<crate::queue::Record>,
        target: &ReplayTarget,
    ) -> Result<(), Interrupted> {
        let Some(last) = records.last().map(|r| r.offset) else {
            return Ok(());
        };
        let mut group: Vec<(u64, ReplicationOp)> = Vec::new();
        for record in records {
            let op = match ReplicationOp::decode(&record.payload) {
                Ok(op) => op,
                Err(err) => {
                    // The record passed its checksum, so this is a format
                    // this build does not read: keep it for an operator.
                    tracing::error!(offset = record.offset, error = %err, "undecodable queue record");
                    self.dead_letter_raw(record.offset, &record.payload, &err.to_string())
                        .await;
                    continue;
                }
            };
            match op {
                ReplicationOp::Delete { ref index, .. }
                    if tandem_es::data_stream::stream_of_backing_index(index).is_some() =>
                {
                    // Earlier writes first: the lookup must see them.
                    self.flush(&mut group, target).await?;
                    let located = self.locate_in_stream(op).await?;
                    group.push((record.offset, located));
                }
                ReplicationOp::Index { .. } | ReplicationOp::Delete { .. } => {
                    group.push((record.offset, op));
                }
                ReplicationOp::ReadRepair { .. } => {
                    if let Some(resolved) = self.resolve_read_repair(record.offset, &op).await? {
                        group.push((record.offset, resolved));
                    }
                }
                ReplicationOp::IndexMeta { .. } | ReplicationOp::QueryScoped { .. } => {
                    self.flush(&mut group, target).await?;
                    self.apply_request(record.offset, &op, target).await?;
                    self.ack(reader, record.offset);
                }
            }
            if group.len() >= self.config.max_batch_ops {
                self.flush(&mut group, target).await?;
            }
        }
        self.flush(&mut group, target).await?;
        self.ack(reader, last);
        Ok(())
    }

    pub(super) fn ack(&self, reader: &mut Reader, offset: u64) {
        if let Err(err) = reader.ack(offset) {
            // Not fatal: the records are re-applied after a restart.
            tracing::error!(offset, error = %err, "cannot persist the replay position");
        }
    }

    /// Reads a read-repair op's document from the primary: the versioned
    /// op to apply, or `None` when it was dead-lettered.
    pub(super) async fn resolve_read_repair(
        &self,
        offset: u64,
        op: &ReplicationOp,
    ) -> Result<Option<ReplicationOp>, Interrupted> {
        let mut attempt = 0;
        loop {
            let result = async {
                let version = self.version_of(true).await?;
                let path = read_repair_get_path(op, &version)
                    .ok_or_else(|| anyhow::anyhow!("not a read-repair op"))?;
                let header = RequestHeader::build(Method::GET, path.as_bytes(), None)?;
                let response = self.primary().exchange(header, Bytes::new()).await?;
                Ok::<_, anyhow::Error>(read_repair_op(
                    op,
                    response.header.status.as_u16(),
                    &response.body,
                ))
            }
            .await;
            match result {
                Ok(Ok(resolved)) => return Ok(Some(resolved)),
                Ok(Err(ReadRepairError::Failed { status, reason })) => {
                    self.dead_letter(offset, op, status, &format!("read-repair: {reason}"))
                        .await;
                    return Ok(None);
                }
                Ok(Err(ReadRepairError::NotReadRepair)) => return Ok(None),
                Ok(Err(ReadRepairError::Retryable { status, reason })) => {
                    self.note_error(format!("read-repair on the primary ({status}): {reason}"));
                }
                Err(err) => self.note_error(format!("read-repair on the primary: {err:#}")),
            }
            self.pause_aware_sleep(self.backoff(attempt)).await?;
            attempt += 1;
        }
    }

    /// A delete recorded in a data stream's backing index, sent to the
    /// backing index that holds the document on the backup (a copied
    /// document sits in the backup's write index, see
    /// `tandem_es::data_stream`); unchanged when no backing index holds it
    /// or the backup has no such stream.
    pub(super) async fn locate_in_stream(
        &self,
        mut op: ReplicationOp,
    ) -> Result<ReplicationOp, Interrupted> {
        let (stream, id) = match &op {
            ReplicationOp::Delete { index, id, .. } => {
                match tandem_es::data_stream::stream_of_backing_index(index) {
                    Some(stream) => (stream.to_owned(), id.clone()),
                    None => return Ok(op),
                }
            }
            _ => return Ok(op),
        };
        let (path, body) = tandem_es::data_stream::locate_request(&stream, &id);
        // A search sees what a refresh made visible: the writes just
        // replayed must be.
        let refresh = format!("/{}/_refresh", tandem_es::uri::encode_path_segment(&stream));
        let mut attempt = 0;
        let located = loop {
            let result = async {
                match self
                    .backup_request(&Method::POST, &refresh, Vec::new())
                    .await?
                {
                    (404, _) => return Ok(None),
                    (s, _) if (200..300).contains(&s) => {}
                    (s, answer) => {
                        return Err(format!("{s}: {}", String::from_utf8_lossy(&answer)));
                    }
                }
                match self
                    .backup_request(&Method::POST, &path, body.clone())
                    .await?
                {
                    (404, _) => Ok(None),
                    (s, answer) if (200..300).contains(&s) => {
                        tandem_es::data_stream::located_index(&answer)
                    }
                    (s, answer) => Err(format!("{s}: {}", String::from_utf8_lossy(&answer))),
                }
            }
            .await;
            match result {
                Ok(located) => break located,
                Err(err) => self.note_error(format!(
                    "locating [{id}] in data stream [{stream}] on the backup: {err}"
                )),
            }
            self.pause_aware_sleep(self.backoff(attempt)).await?;
            attempt += 1;
        };
        if let (Some(located), ReplicationOp::Delete { index, .. }) = (located, &mut op) {
            *index = located;
        }
        Ok(op)
    }

    /// Applies a group of index/delete ops with one `_bulk` per attempt,
    /// retrying only the items that may succeed later.
    pub(super) async fn flush(
        &self,
        group: &mut Vec<(u64, ReplicationOp)>,
        target: &ReplayTarget,
    ) -> Result<(), Interrupted> {
        let mut remaining = std::mem::take(group);
        let mut conflicts = Vec::new();
        let mut attempt = 0;
        while !remaining.is_empty() {
            let body = match build_replay_bulk(remaining.iter().map(|(_, op)| op), target) {
                Ok(body) => body,
                Err(_) => {
                    // Find and dead-letter the op(s) that cannot be encoded.
                    let mut unencodable = Vec::new();
                    remaining.retain(|(offset, op)| {
                        match build_replay_bulk(std::iter::once(op), target) {
                            Ok(_) => true,
                            Err(err) => {
                                unencodable.push((*offset, op.clone(), err.to_string()));
                                false
                            }
                        }
                    });
                    for (offset, op, reason) in unencodable {
                        self.dead_letter(offset, &op, 0, &reason).await;
                    }
                    continue;
                }
            };
            let indices: Vec<String> = remaining
                .iter()
                .filter_map(|(_, op)| op.index().map(|i| i.into_owned()))
                .collect();
            self.ensure_gc_deletes(&indices).await;
            match self.send_bulk(body).await {
                Err(reason) => self.note_error(reason),
                Ok(outcomes) if outcomes.len() != remaining.len() => self.note_error(format!(
                    "backup answered {} bulk items for {} ops",
                    outcomes.len(),
                    remaining.len()
                )),
                Ok(outcomes) => {
                    let mut retry = Vec::new();
                    let mut retry_reason = None;
                    let mut applied = OpKindCounts::default();
                    for ((offset, op), outcome) in remaining.into_iter().zip(outcomes) {
                        match outcome {
                            ItemOutcome::Applied => {
                                applied.add(op.kind_name());
                                self.samples.offer(|| DocKey::of(&op));
                            }
                            ItemOutcome::VersionConflict { current } => {
                                conflicts.push((offset, op, current))
                            }
                            ItemOutcome::Retryable { status, reason } => {
                                retry_reason = Some(format!("{status}: {reason}"));
                                retry.push((offset, op));
                            }
                            ItemOutcome::Failed { status, reason } => {
                                self.dead_letter(offset, &op, status, &reason).await
                            }
                        }
                    }
                    self.note_applied(&applied);
                    remaining = retry;
                    match retry_reason {
                        Some(reason) => self.note_error(format!(
                            "{} bulk items to retry, e.g. {reason}",
                            remaining.len()
                        )),
                        None => break,
                    }
                }
            }
            // Newly created indices get their gc_deletes on the next pass.
            self.ensure_gc_deletes(&indices).await;
            self.pause_aware_sleep(self.backoff(attempt)).await?;
            attempt += 1;
        }
        self.settle_conflicts(conflicts, target).await
    }

    /// Sends a replay `_bulk`; `Err` means the whole request should be
    /// retried.
    pub(super) async fn send_bulk(&self, body: Vec<u8>) -> Result<Vec<ItemOutcome>, String> {
        let mut header = RequestHeader::build(Method::POST, REPLAY_BULK_PATH.as_bytes(), None)
            .map_err(|e| e.to_string())?;
        header
            .insert_header("content-type", "application/x-ndjson")
            .map_err(|e| e.to_string())?;
        let response = self
            .backup()
            .exchange(header, Bytes::from(body))
            .await
            .map_err(|e| format!("backup _bulk: {e}"))?;
        let status = response.header.status.as_u16();
        if status != 200 {
            return Err(format!(
                "backup _bulk answered {status}: {}",
                String::from_utf8_lossy(&response.body[..response.body.len().min(300)])
            ));
        }
        parse_bulk_response_for_replay(&response.body)
            .map_err(|e| format!("backup _bulk answer is not a bulk answer: {e}"))
    }

    /// Applies a metadata or query-scoped op, retrying while it may succeed.
    pub(super) async fn apply_request(
        &self,
        offset: u64,
        op: &ReplicationOp,
        target: &ReplayTarget,
    ) -> Result<(), Interrupted> {
        let mut attempt = 0;
        loop {
            match self.apply_once(op, target).await {
                ItemOutcome::Applied => {
                    let mut applied = OpKindCounts::default();
                    applied.add(op.kind_name());
                    self.note_applied(&applied);
                    // A replayed settings change, or an index deleted and
                    // created again under the same name, may have lowered
                    // the backup's `index.gc_deletes`: raise it again
                    // before the next document batch.
                    // The same holds for a typed backup's index types.
                    if matches!(op, ReplicationOp::IndexMeta { .. }) {
                        self.gc_done.lock().clear();
                        self.index_types.lock().clear();
                    }
                    return Ok(());
                }
                ItemOutcome::Failed { status, reason } => {
                    self.dead_letter(offset, op, status, &reason).await;
                    return Ok(());
                }
                ItemOutcome::Retryable { status, reason } => {
                    self.note_error(format!("{} ({status}): {reason}", op.kind_name()));
                }
                ItemOutcome::VersionConflict { .. } => {
                    unreachable!("apply_once settles version conflicts")
                }
            }
            self.pause_aware_sleep(self.backoff(attempt)).await?;
            attempt += 1;
        }
    }

    /// One attempt at applying any op on its own.
    /// One request to the backup: status and body, `Err` when no answer
    /// came.
    pub(super) async fn backup_request(
        &self,
        method: &Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<(u16, Bytes), String> {
        let header = build_header(method, path, !body.is_empty())?;
        let response = self
            .backup()
            .exchange(header, Bytes::from(body))
            .await
            .map_err(|e| format!("{method} {path} on the backup: {e}"))?;
        Ok((response.header.status.as_u16(), response.body))
    }

    /// Replays a by-query op as the reconciliation of the documents it
    /// matches on the backup (see [`tandem_es::by_query`]), in one
    /// attempt: refresh, then page by page list the matches, read them
    /// from the primary and write the primary's state, version-fenced.
    /// Every step is idempotent, so a failed attempt is simply repeated.
    pub(super) async fn by_query_once(
        &self,
        op: &ReplicationOp,
        target: &ReplayTarget,
    ) -> ItemOutcome {
        let retryable = |reason: String| ItemOutcome::Retryable { status: 0, reason };
        let search = match match_search(op, target) {
            Ok(search) => search,
            Err(err) => {
                return ItemOutcome::Failed {
                    status: 0,
                    reason: err.to_string(),
                };
            }
        };
        let primary_version = match self.version_of(true).await {
            Ok(version) => version,
            Err(err) => return retryable(format!("{err:#}")),
        };
        if let Some(path) = refresh_path(op) {
            match self.backup_request(&Method::POST, &path, Vec::new()).await {
                Ok((status, _)) if (200..300).contains(&status) => {}
                Ok((status, body)) => {
                    return ItemOutcome::Retryable {
                        status,
                        reason: format!("refresh before a by-query write: {}", excerpt(&body)),
                    };
                }
                Err(reason) => return retryable(reason),
            }
        }
        let mut response = self
            .backup_request(&Method::POST, &search.path, search.body)
            .await;
        let mut scroll_id = None;
        let mut reconciled = 0u64;
        let outcome = loop {
            let (status, body) = match response {
                Ok(answer) => answer,
                Err(reason) => break retryable(reason),
            };
            if let Some(id) = scroll_id_of(&body) {
                scroll_id = Some(id);
            }
            if !(200..300).contains(&status) {
                let reason = format!(
                    "listing what the by-query write matches on the backup: {}",
                    excerpt(&body)
                );
                break if status == 429 || status >= 500 {
                    ItemOutcome::Retryable { status, reason }
                } else {
                    ItemOutcome::Failed { status, reason }
                };
            }
            let page = match parse_match_page(&body) {
                Ok(page) => page,
                Err(reason) => break retryable(format!("by-query matches: {reason}")),
            };
            if page.hits.is_empty() {
                break ItemOutcome::Applied;
            }
            let keys: Vec<DocKey> = page.hits.iter().map(|(key, _)| key.clone()).collect();
            let states = match self.primary_documents(&keys, &primary_version).await {
                Ok(states) => states,
                Err(reason) => break retryable(reason),
            };
            let ops = page_ops(&page.hits, &states);
            reconciled += ops.len() as u64;
            if let Err(outcome) = self.apply_ops_once(&ops, target).await {
                break outcome;
            }
            match (&page.scroll_id, page.hits.len() < BY_QUERY_PAGE) {
                (_, true) => break ItemOutcome::Applied,
                (Some(id), false) => {
                    response = self
                        .backup_request(&Method::POST, SCROLL_PATH, scroll_body(id))
                        .await;
                }
                (None, false) => break retryable("a full page came without a scroll id".into()),
            }
        };
        if let Some(id) = scroll_id {
            // Best effort: the backup frees it after the keep-alive anyway.
            let _ = self
                .backup_request(&Method::DELETE, SCROLL_PATH, clear_scroll_body(&id))
                .await;
        }
        if outcome == ItemOutcome::Applied {
            tracing::debug!(
                path = ?op.index(),
                documents = reconciled,
                "by-query write replayed as the reconciliation of its matches"
            );
        }
        outcome
    }

    /// Applies index/delete ops to the backup in one `_bulk`, settling
    /// version conflicts; the first other failure is returned.
    pub(super) async fn apply_ops_once(
        &self,
        ops: &[ReplicationOp],
        target: &ReplayTarget,
    ) -> Result<(), ItemOutcome> {
        if ops.is_empty() {
            return Ok(());
        }
        let body = build_replay_bulk(ops.iter(), target).map_err(|e| ItemOutcome::Failed {
            status: 0,
            reason: e.to_string(),
        })?;
        let indices: Vec<String> = ops
            .iter()
            .filter_map(|op| op.index().map(|i| i.into_owned()))
            .collect();
        self.ensure_gc_deletes(&indices).await;
        let outcomes = self
            .send_bulk(body)
            .await
            .map_err(|reason| ItemOutcome::Retryable { status: 0, reason })?;
        if outcomes.len() != ops.len() {
            return Err(ItemOutcome::Retryable {
                status: 0,
                reason: format!(
                    "backup answered {} bulk items for {} ops",
                    outcomes.len(),
                    ops.len()
                ),
            });
        }
        let mut applied = OpKindCounts::default();
        let mut failure = None;
        for (op, outcome) in ops.iter().zip(outcomes) {
            let outcome = match outcome {
                ItemOutcome::VersionConflict { current } => {
                    self.settle_one_conflict(op, current, target).await
                }
                outcome => outcome,
            };
            match outcome {
                ItemOutcome::Applied => {
                    applied.add(op.kind_name());
                    self.samples.offer(|| DocKey::of(op));
                }
                other => {
                    failure.get_or_insert(other);
                }
            }
        }
        self.note_applied(&applied);
        failure.map_or(Ok(()), Err)
    }

    pub(super) async fn apply_once(
        &self,
        op: &ReplicationOp,
        target: &ReplayTarget,
    ) -> ItemOutcome {
        match op {
            ReplicationOp::Index { .. } | ReplicationOp::Delete { .. } => {
                let body = match build_replay_bulk(std::iter::once(op), target) {
                    Ok(body) => body,
                    Err(err) => {
                        return ItemOutcome::Failed {
                            status: 0,
                            reason: err.to_string(),
                        };
                    }
                };
                match self.send_bulk(body).await {
                    Ok(mut outcomes) if outcomes.len() == 1 => match outcomes.remove(0) {
                        ItemOutcome::VersionConflict { current } => {
                            self.settle_one_conflict(op, current, target).await
                        }
                        outcome => outcome,
                    },
                    Ok(_) => ItemOutcome::Retryable {
                        status: 0,
                        reason: "unpaired bulk answer".into(),
                    },
                    Err(reason) => ItemOutcome::Retryable { status: 0, reason },
                }
            }
            ReplicationOp::ReadRepair { .. } => match self.resolve_read_repair_once(op).await {
                Ok(resolved) => Box::pin(self.apply_once(&resolved, target)).await,
                Err(outcome) => outcome,
            },
            ReplicationOp::QueryScoped { .. } => self.by_query_once(op, target).await,
            ReplicationOp::IndexMeta { .. }
                if let Some((stream, generation)) = tandem_es::data_stream::stream_rollover(op) =>
            {
                self.roll_stream_to(&stream, generation).await
            }
            ReplicationOp::IndexMeta { .. } => {
                let request = match replay_request(op, target) {
                    Ok(request) => request,
                    Err(err) => {
                        return ItemOutcome::Failed {
                            status: 0,
                            reason: err.to_string(),
                        };
                    }
                };
                let header =
                    match build_header(&request.method, &request.path, !request.body.is_empty()) {
                        Ok(header) => header,
                        Err(reason) => return ItemOutcome::Failed { status: 0, reason },
                    };
                match self.backup().exchange(header, request.body).await {
                    Ok(response) => {
                        let json = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
                        request_outcome(op, response.header.status.as_u16(), &json)
                    }
                    Err(err) => ItemOutcome::Retryable {
                        status: 0,
                        reason: err.to_string(),
                    },
                }
            }
        }
    }

    /// Replays a data stream's rollover: rolls the backup's stream over
    /// until it reaches `generation`, not at all when it is there already
    /// (see `tandem_es::data_stream`).
    async fn roll_stream_to(&self, stream: &str, generation: u64) -> ItemOutcome {
        let encoded = tandem_es::uri::encode_path_segment(stream);
        let describe = format!("/_data_stream/{encoded}");
        let rollover = format!("/{encoded}/_rollover");
        let answer_outcome = |status: u16, body: &Bytes, what: &str| {
            let reason = format!(
                "{what} data stream [{stream}] on the backup: {}",
                String::from_utf8_lossy(body)
            );
            if status == 429 || status >= 500 || status == 0 {
                ItemOutcome::Retryable { status, reason }
            } else {
                ItemOutcome::Failed { status, reason }
            }
        };
        // Each rollover adds one generation: bounded by the gap.
        loop {
            let current = match self
                .backup_request(&Method::GET, &describe, Vec::new())
                .await
            {
                Ok((200, body)) => match tandem_es::data_stream::generation_of(&body) {
                    Some(current) => current,
                    None => return answer_outcome(200, &body, "reading"),
                },
                Ok((status, body)) => return answer_outcome(status, &body, "reading"),
                Err(reason) => return ItemOutcome::Retryable { status: 0, reason },
            };
            if current >= generation {
                return ItemOutcome::Applied;
            }
            match self
                .backup_request(&Method::POST, &rollover, Vec::new())
                .await
            {
                Ok((status, _)) if (200..300).contains(&status) => {}
                Ok((status, body)) => return answer_outcome(status, &body, "rolling over"),
                Err(reason) => return ItemOutcome::Retryable { status: 0, reason },
            }
        }
    }

    pub(super) async fn resolve_read_repair_once(
        &self,
        op: &ReplicationOp,
    ) -> Result<ReplicationOp, ItemOutcome> {
        let retryable = |reason: String| ItemOutcome::Retryable { status: 0, reason };
        let version = self
            .version_of(true)
            .await
            .map_err(|e| retryable(format!("{e:#}")))?;
        let path = read_repair_get_path(op, &version).ok_or_else(|| ItemOutcome::Failed {
            status: 0,
            reason: "not a read-repair op".into(),
        })?;
        let header = build_header(&Method::GET, &path, false).map_err(retryable)?;
        let response = self
            .primary()
            .exchange(header, Bytes::new())
            .await
            .map_err(|e| retryable(e.to_string()))?;
        read_repair_op(op, response.header.status.as_u16(), &response.body).map_err(|e| match e {
            ReadRepairError::Retryable { status, reason } => {
                ItemOutcome::Retryable { status, reason }
            }
            ReadRepairError::Failed { status, reason } => ItemOutcome::Failed { status, reason },
            ReadRepairError::NotReadRepair => ItemOutcome::Failed {
                status: 0,
                reason: "not a read-repair op".into(),
            },
        })
    }

    /// Raises `index.gc_deletes` on backup indices not yet handled, so
    /// versioned delete tombstones outlive the replay window. Best effort:
    /// an index that does not exist yet is retried on the next call.
    pub(super) async fn ensure_gc_deletes(&self, indices: &[String]) {
        if self.config.gc_deletes.is_empty() {
            return;
        }
        let todo: Vec<String> = {
            let done = self.gc_done.lock();
            let mut todo: Vec<String> = indices
                .iter()
                .filter(|i| !done.contains(*i))
                .cloned()
                .collect();
            todo.sort();
            todo.dedup();
            todo
        };
        for index in todo {
            let path = format!("/{}/_settings", tandem_es::uri::encode_path_segment(&index));
            let body = json!({ "index": { "gc_deletes": self.config.gc_deletes } }).to_string();
            let Ok(header) = build_header(&Method::PUT, &path, true) else {
                continue;
            };
            match self.backup().exchange(header, Bytes::from(body)).await {
                Ok(r) if r.header.status.is_success() => {
                    self.gc_done.lock().insert(index);
                }
                Ok(r) if r.header.status.as_u16() == 404 => {}
                Ok(r) => tracing::warn!(
                    index,
                    status = r.header.status.as_u16(),
                    "cannot raise index.gc_deletes on the backup"
                ),
                Err(err) => {
                    tracing::debug!(index, error = %err, "cannot raise index.gc_deletes yet")
                }
            }
        }
    }
}
