// postgres_changes filters whose exact answer needs the database (pattern
// matching, collation-ordered text, timestamps), on both serializers,
// checked against the database's own WHERE on the same rows.

import { test } from '../../lib/harness.mjs'
import { checkFilters } from './filtercheck.mjs'

const VSNS = ['2.0.0', '1.0.0']

const COLUMNS = 'id int primary key, s text, ts timestamptz, d date'
const ROWS = `
  (1, 'apple', '2024-01-01 00:00:00+00', '2024-01-01'),
  (2, 'Apple pie', '2024-06-01 12:00:00+00', '2024-06-01'),
  (3, 'banana', null, null),
  (4, null, '2023-12-31 23:59:59.999+00', '2023-12-31'),
  (5, 'a_b%c', '2025-01-01 00:00:00+00', '2025-01-01'),
  (6, 'ÄPFEL', '2024-01-01 00:00:00.001+00', '2024-01-02'),
  (7, '', '2024-01-01 01:00:00+01', '2024-01-01')`

const CASES = [
  { filter: 's=like.app%', where: "s like 'app%'" },
  { filter: 's=like.%_b\\%%', where: "s like '%_b\\%%'" },
  { filter: 's=ilike.APP%', where: "s ilike 'APP%'" },
  { filter: 's=not.like.%a%', where: "not (s like '%a%')" },
  { filter: 's=match.^[ab]', where: "s ~ '^[ab]'" },
  { filter: 's=imatch.^A', where: "s ~* '^A'" },
  { filter: 's=lt.b', where: "s < 'b'" },
  { filter: 's=gte.apple', where: "s >= 'apple'" },
  { filter: 'ts=gt.2024-01-01T00:00:00Z', where: "ts > '2024-01-01T00:00:00Z'" },
  { filter: 'ts=eq.2024-01-01 00:00:00+00', where: "ts = '2024-01-01 00:00:00+00'" },
  { filter: 'd=lte.2024-01-01', where: "d <= '2024-01-01'" },
  { filter: 'd=in.(2024-01-01,2025-01-01)', where: "d in ('2024-01-01', '2025-01-01')" },
]

for (const vsn of VSNS) {
  test(`[${vsn}] database-evaluated filters (like ilike match imatch, text order, timestamptz, date) deliver exactly the rows the database selects`, async (ctx) => {
    await checkFilters(ctx, vsn, { prefix: 'pgjs_fdb', columnsSql: COLUMNS, rowsSql: ROWS, cases: CASES })
  })
}
