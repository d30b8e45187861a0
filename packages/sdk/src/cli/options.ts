/**
 * Option and argument values, parsed from what the shell gives by the contract's
 * schemas. A bad value fails before any request with one line naming the option and
 * the value (INVALID_INPUT: exit status 2).
 */
import { Option } from 'commander';
import { z } from 'zod';
import { SPAWN_MANY_MAX, canaryWeight, parseDuration, tokenScope, versionNumber, workflowRef } from '../contract/index.js';
import { SwarmError } from '../errors.js';

/** Turns an option's or argument's text into its value; `what` names it in the error. */
export type ValueParser<T> = (what: string) => (text: string) => T;

function parsedBy<T>(schema: z.ZodType<T, unknown>, expected: string): ValueParser<T> {
  return (what) => (text) => {
    const r = schema.safeParse(text);
    if (!r.success) throw new SwarmError('INVALID_INPUT', `${what} must be ${expected}, not "${text}"`);
    return r.data;
  };
}

/** Decimal digits as typed, without a sign, a fraction or leading zeros. */
const decimal = z
  .string()
  .regex(/^(0|[1-9]\d{0,9})$/)
  .transform(Number);

export const asVersion = parsedBy(decimal.pipe(versionNumber), 'a version number (1, 2, …)');
/** Every count the CLI takes (--limit, --keep): the registry holds each to its own maximum. */
export const asCount = parsedBy(decimal.pipe(z.number().int().min(1)), 'a positive whole number');
/** `swarm spawn --count`: 1 to SPAWN_MANY_MAX (executions.spawnMany's limit). */
export const asSpawnCount = parsedBy(
  decimal.pipe(z.number().int().min(1).max(SPAWN_MANY_MAX)),
  `a whole number from 1 to ${SPAWN_MANY_MAX}`,
);
export const asWeight = parsedBy(decimal.pipe(canaryWeight), 'a percentage from 1 to 99');
export const asScope = parsedBy(tokenScope, 'admin, orchestrator or tenant:<slug>');
export const asWorkflow = parsedBy(workflowRef, 'a workflow id or tenant/name');
/** `tenant/name` only (creating a workflow: there is no id yet), as its two parts. */
export const asNewWorkflow = parsedBy(
  workflowRef
    .refine((ref) => ref.includes('/'))
    .transform((ref) => {
      const [tenant = '', name = ''] = ref.split('/');
      return { tenant, name };
    }),
  'of the form tenant/name',
);
/** In seconds. */
export const asDuration = parsedBy(z.string().transform(parseDuration).pipe(z.number()), 'a duration like 30d, 12h, 90m or 45s');

/** The `<tenant/name>` argument of the commands about one workflow. */
export const WORKFLOW = ['<tenant/name>', 'the workflow (or its id)', asWorkflow('workflow')] as const;

/** An option whose value `parse` checks, with its default given as typed (and shown so in --help). */
export function valueOption<T>(flags: string, description: string, parse: ValueParser<T>, defaultText?: string): Option {
  const option = new Option(flags, description);
  const what = option.long ?? flags;
  option.argParser(parse(what));
  return defaultText === undefined ? option : option.default(parse(what)(defaultText), defaultText);
}
