/**
 * A procedure's answer as the JSON text tRPC sends (`{"result":{"data":…}}`), written by a
 * serializer compiled once from its output schema with fast-json-stringify, as Fastify does
 * with a route's response schema: only the properties the contract names are written (a
 * field a service adds by mistake, a database column, does not leave the registry), in one
 * pass. The answer is not validated against the schema again on every call (zod's parse was
 * ~7 µs of a cached `versions.active` call, ~10% of the REST route's whole cost: bench/README.md,
 * figure 2b): services build answers with typed code, and the tests check every answer the
 * registry gives against its zod schema as well (SWARM_CHECK_ANSWERS, `checked` below).
 *
 * The trade-off, accepted: a value that breaks the contract is not refused but written as
 * the serializer coerces it (fast-json-stringify's README, "Nullable": a null where none is
 * allowed becomes "", 0, false, {} or []; a Date in a string field its ISO text; 2.5 for an
 * integer 2; an enum takes any string). zod refused those with an internal error. The
 * answers are built by typed code from typed rows; the ones from JSON columns (signing
 * material, delegations) were validated when they were stored, and a VM verifies signatures
 * itself. The tests' cross-check covers every answer the suite produces.
 *
 * An output schema that JSON Schema cannot express (a transform), or that uses a construct
 * left out here (unions other than "X or null" and of one primitive type, `$ref`), keeps
 * zod's parse and JSON.stringify.
 */
import { isDeepStrictEqual } from 'node:util';
import fastJson from 'fast-json-stringify';
import { z } from 'zod';

/** The answer's JSON text for the procedure's result, `data` as the procedure's function returned it. */
export type AnswerWriter = (data: unknown) => string;

type JsonSchema = { [key: string]: unknown };

/** Keywords that only constrain values: the serializer writes what it is given, so they are dropped. */
const CONSTRAINTS = new Set([
  '$schema',
  'description',
  'format',
  'pattern',
  'minimum',
  'maximum',
  'exclusiveMinimum',
  'exclusiveMaximum',
  'minLength',
  'maxLength',
  'minItems',
  'maxItems',
  'propertyNames',
]);

class Unsupported extends Error {}

const PRIMITIVE = new Set<unknown>(['string', 'number', 'integer', 'boolean']);

/** The schema as fast-json-stringify reads it: "X or null" as `nullable`, constraints dropped. */
function forSerializer(schema: JsonSchema): JsonSchema {
  const out: JsonSchema = {};
  for (const [key, value] of Object.entries(schema)) {
    if (CONSTRAINTS.has(key)) continue;
    switch (key) {
      case 'type':
      case 'required':
      case 'enum':
      case 'const':
      // A property the schema fills in when absent: fast-json-stringify writes it as zod would.
      case 'default':
        out[key] = value;
        break;
      case 'properties':
        out[key] = Object.fromEntries(Object.entries(value as Record<string, JsonSchema>).map(([k, v]) => [k, forSerializer(v)]));
        break;
      case 'items':
        out[key] = forSerializer(value as JsonSchema);
        break;
      case 'additionalProperties':
        out[key] = typeof value === 'boolean' ? value : forSerializer(value as JsonSchema);
        break;
      case 'anyOf': {
        const besides = Object.keys(schema).filter((k) => k !== 'anyOf' && !CONSTRAINTS.has(k));
        if (besides.length > 0) throw new Unsupported(key);
        const options = (value as JsonSchema[]).map(forSerializer);
        const other = options.filter((o) => o.type !== 'null');
        // "X or null".
        if (options.length === 2 && other.length === 1) return { ...other[0], nullable: true };
        // Strings of several shapes (a token's scope: "admin", "orchestrator" or "tenant:<slug>").
        const types = new Set(options.map((o) => o.type));
        const [type] = types;
        if (types.size === 1 && PRIMITIVE.has(type)) return { type };
        throw new Unsupported(key);
      }
      default:
        throw new Unsupported(key);
    }
  }
  return out;
}

/** The compiled writer for answers of `output`, or undefined when the schema needs zod (see the top). */
export function compileAnswer(output: z.ZodType): AnswerWriter | undefined {
  let data: JsonSchema;
  try {
    data = forSerializer(z.toJSONSchema(output, { io: 'output', unrepresentable: 'throw' }) as JsonSchema);
  } catch {
    return undefined;
  }
  const write = fastJson({
    type: 'object',
    properties: { result: { type: 'object', properties: { data }, required: ['data'] } },
    required: ['result'],
  });
  return (value) => write({ result: { data: value } });
}

/** zod's answer: the output parsed (transforms applied, unknown fields stripped), then JSON.stringify. */
export const parsedAnswer =
  (output: z.ZodType): AnswerWriter =>
  (value) =>
    JSON.stringify({ result: { data: output.parse(value) } });

/**
 * `write`, checked against zod's answer on every call: the two must hold the same JSON
 * (properties may come in another order), else the call fails (an internal error, logged).
 * For tests (SWARM_CHECK_ANSWERS=1).
 */
export function checked(path: string, write: AnswerWriter, output: z.ZodType): AnswerWriter {
  const expected = parsedAnswer(output);
  return (value) => {
    const text = write(value);
    const want = expected(value);
    if (text !== want && !isDeepStrictEqual(JSON.parse(text), JSON.parse(want))) {
      throw new Error(`the answer of ${path} differs from its schema's:\n  written: ${text}\n  schema:  ${want}`);
    }
    return text;
  };
}
