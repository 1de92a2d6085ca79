// The `transformerDynamics.*` settings checked against the schema package.json declares for
// them. VS Code's Settings editor warns about a value outside it, but settings.json takes any
// JSON; a value the extension does not understand would otherwise fall back to a default, and a
// default for `weightPrecision`, `lensTopK` or `maxTokens` changes the numbers shown. So a run is
// refused with the setting named instead (Ctx.ensureModel). No VS Code API here: tested directly.

/** The settings a run reads (without the `transformerDynamics.` prefix): a value outside their schema refuses the run. */
export const RUN_SETTINGS = [
  'modelPath',
  'maxTokens',
  'threads',
  'lensTopK',
  'attentionPatterns',
  'executionProvider',
  'weightPrecision',
  'graphCache',
  'graphCacheLimitGB',
  'memoryCapGB',
] as const;

/** The part of a setting's JSON schema (package.json `contributes.configuration`) checked here. */
export interface SettingSchema {
  type?: string | string[];
  enum?: readonly unknown[];
  minimum?: number;
  maximum?: number;
  pattern?: string;
}

const show = (v: unknown): string => {
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 60 ? `${s.slice(0, 57)}…` : s;
};

/**
 * What is wrong with `value` for the setting `key`, in a sentence that names the setting, or
 * null when the schema allows it. `undefined` (not set) is allowed: VS Code gives the default.
 */
export function settingProblem(key: string, schema: SettingSchema, value: unknown): string | null {
  if (value === undefined) return null;
  const types = schema.type === undefined ? [] : Array.isArray(schema.type) ? schema.type : [schema.type];
  const is = (t: string): boolean =>
    t === 'integer'
      ? typeof value === 'number' && Number.isInteger(value)
      : t === 'number'
        ? typeof value === 'number' && Number.isFinite(value)
        : t === 'null'
          ? value === null
          : typeof value === t;
  const head = `${key} = ${show(value)}`;
  if (types.length > 0 && !types.some(is)) {
    const want = types.map((t) => (t === 'integer' ? 'a whole number' : t === 'boolean' ? 'true or false' : `a ${t}`)).join(' or ');
    return `${head} is not ${want}.`;
  }
  if (schema.enum && !schema.enum.includes(value)) return `${head} is not one of ${schema.enum.map(String).join(', ')}.`;
  if (typeof value === 'number') {
    if (schema.minimum !== undefined && value < schema.minimum) return `${head} is below its minimum, ${schema.minimum}.`;
    if (schema.maximum !== undefined && value > schema.maximum) return `${head} is above its maximum, ${schema.maximum}.`;
  }
  if (typeof value === 'string' && schema.pattern !== undefined && !new RegExp(schema.pattern).test(value))
    return `${head} is not of the form ${schema.pattern}.`;
  return null;
}

/** Every problem among `keys` (full setting names), in order; `get` reads a setting's value. */
export function settingProblems(
  properties: Readonly<Record<string, SettingSchema>>,
  keys: readonly string[],
  get: (key: string) => unknown,
): string[] {
  const out: string[] = [];
  for (const key of keys) {
    const schema = properties[key];
    if (!schema) throw new Error(`${key} is not a contributed setting`);
    const p = settingProblem(key, schema, get(key));
    if (p) out.push(p);
  }
  return out;
}
