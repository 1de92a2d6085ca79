// A session whose intervention inputs default to "no intervention": every run that does not
// feed one gets its default (graph/interventions.ts), so code that runs the forward graph
// without interventions (analysis, generation, benches, tests) stays unchanged and computes
// exactly what it computed before the inputs existed.
import type { ModelSpec } from '../arch/spec';
import { interventionDefaults } from '../graph/interventions';
import type { AnyTensor, Session } from '../runtime/ort';

export function withInterventionDefaults(session: Session, spec: ModelSpec): Session {
  const all = interventionDefaults(spec);
  const defaults = Object.entries(all).filter(([name]) => session.inputNames.includes(name));
  if (defaults.length === 0) return session;
  const complete = (feeds: Record<string, AnyTensor>) => {
    const full = { ...feeds };
    for (const [name, t] of defaults) if (!(name in full)) full[name] = t;
    return full;
  };
  return {
    get provider() {
      return session.provider;
    },
    get providerNote() {
      return session.providerNote;
    },
    get adapter() {
      return session.adapter;
    },
    get fetchAll() {
      return session.fetchAll;
    },
    // the intervention inputs are not the caller's business: they are filled in here
    inputNames: session.inputNames.filter((n) => !(n in all)),
    outputNames: session.outputNames,
    run: (feeds, fetches, into) => session.run(complete(feeds), fetches, into),
    runKeeping: (feeds, fetches) => session.runKeeping(complete(feeds), fetches),
    gatherBatch: (tensors, from) => session.gatherBatch(tensors, from),
    release: () => session.release(),
  };
}
