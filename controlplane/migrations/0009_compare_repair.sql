-- RepairCompareDiffs: when a difference was repaired (the document found
-- equal on both sides after its reconciliation). NULL while it differs.
ALTER TABLE compare_diffs ADD COLUMN repaired_at TIMESTAMPTZ;
