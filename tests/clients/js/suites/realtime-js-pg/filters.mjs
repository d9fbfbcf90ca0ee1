// postgres_changes filters the server evaluates itself (equality, `in`,
// numeric order, `is`, `not.`, AND lists) on both serializers, each checked
// against the database's answer for the same predicate on the same rows.

import { test } from '../../lib/harness.mjs'
import { checkFilters } from './filtercheck.mjs'

const VSNS = ['2.0.0', '1.0.0']

const COLUMNS = 'id int primary key, n int, s text, b bool, x numeric, f float8, u uuid'
const UUID1 = 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'
const ROWS = `
  (1, 1, 'a', true, 1.5, 0.5, '${UUID1}'),
  (2, 2, 'b', false, 2.50, -1, null),
  (3, 3, 'c', null, null, 1e10, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12'),
  (4, null, null, true, -1, null, '${UUID1}'),
  (5, -5, 'a b', false, 100, 2.5, null),
  (6, 2, 'B', null, 2.5, -0.0, null),
  (7, 2147483647, '', true, 0, 3, null)`

const INT_CASES = [
  { filter: 'n=eq.2', where: 'n = 2' },
  { filter: 'n=neq.2', where: 'n <> 2' },
  { filter: 'n=lt.2', where: 'n < 2' },
  { filter: 'n=lte.2', where: 'n <= 2' },
  { filter: 'n=gt.2', where: 'n > 2' },
  { filter: 'n=gte.2', where: 'n >= 2' },
  { filter: 'n=in.(1,3,-5)', where: 'n in (1, 3, -5)' },
  { filter: 'n=is.null', where: 'n is null' },
  { filter: 'n=not.eq.2', where: 'not (n = 2)' },
  { filter: 'n=not.in.(1,2)', where: 'not (n in (1, 2))' },
  { filter: 'id=in.(2,4,6)', where: 'id in (2, 4, 6)' },
  { filter: 'n=gte.2,b=is.false', where: 'n >= 2 and b is false' },
]

const OTHER_CASES = [
  { filter: 's=eq.a', where: "s = 'a'" },
  { filter: 's=neq.a', where: "s <> 'a'" },
  { filter: 's=in.(a,B)', where: "s in ('a', 'B')" },
  { filter: 's=eq.a b', where: "s = 'a b'" },
  { filter: 'b=is.true', where: 'b is true' },
  { filter: 'b=is.false', where: 'b is false' },
  { filter: 'b=is.null', where: 'b is null' },
  { filter: 'b=not.is.null', where: 'b is not null' },
  { filter: 'b=eq.true', where: 'b = true' },
  { filter: 'x=gt.2', where: 'x > 2' },
  { filter: 'x=eq.2.5', where: 'x = 2.5' },
  { filter: 'x=lte.0', where: 'x <= 0' },
  { filter: 'f=lt.0', where: 'f < 0' },
  { filter: 'f=eq.0', where: 'f = 0' },
  { filter: `u=eq.${UUID1}`, where: `u = '${UUID1}'` },
]

for (const vsn of VSNS) {
  test(`[${vsn}] filters on int4 (eq neq lt lte gt gte in is not. AND) deliver exactly the rows the database selects`, async (ctx) => {
    await checkFilters(ctx, vsn, { prefix: 'pgjs_fint', columnsSql: COLUMNS, rowsSql: ROWS, cases: INT_CASES })
  })

  test(`[${vsn}] filters on text equality, bool is, numeric, float8 and uuid deliver exactly the rows the database selects`, async (ctx) => {
    await checkFilters(ctx, vsn, { prefix: 'pgjs_foth', columnsSql: COLUMNS, rowsSql: ROWS, cases: OTHER_CASES })
  })

  test(`[${vsn}] UPDATE filters look at the new row`, async (ctx) => {
    await checkFilters(ctx, vsn, {
      prefix: 'pgjs_fupd',
      columnsSql: COLUMNS,
      rowsSql: ROWS,
      event: 'UPDATE',
      cases: [
        { filter: 'n=gt.10', where: 'n > 10' },
        { filter: 'n=eq.2', where: 'n = 2' },
        { filter: 'b=is.null', where: 'b is null' },
      ],
      touched: [1, 3, 5, 6],
      write: (q) => [`update ${q} set n = 20 where id = 1`, `update ${q} set n = 2 where id = 3`, `update ${q} set b = null where id = 5`, `update ${q} set s = 'z' where id = 6`],
    })
  })

  test(`[${vsn}] DELETE filters look at the old row (REPLICA IDENTITY FULL)`, async (ctx) => {
    await checkFilters(ctx, vsn, {
      prefix: 'pgjs_fdel',
      columnsSql: COLUMNS,
      rowsSql: ROWS,
      event: 'DELETE',
      replicaFull: true,
      cases: [
        { filter: 'n=eq.2', where: 'n = 2' },
        { filter: 'id=in.(1,3)', where: 'id in (1, 3)' },
        { filter: 's=neq.a', where: "s <> 'a'" },
      ],
      touched: [1, 2, 3, 5, 6],
      write: (q) => [`delete from ${q} where id in (1, 2, 3, 5, 6)`],
    })
  })
}
