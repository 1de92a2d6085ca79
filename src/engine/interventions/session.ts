// A session whose intervention inputs default to "no intervention": every run that does not
// feed one gets its default (graph/interventions.ts), so code that runs the forward graph
// without interventions (analysis, generation, benches, tests) stays unchanged and computes
// exactly what it computed before the inputs existed.
import type { ModelSpec } from '../arch/spec';
import { interventionDefaults } from '../graph/interventions';
import type { Session } from '../runtime/ort';

export function withInterventionDefaults(session: Session, spec: ModelSpec): Session {
  const all = interventionDefaults(spec);
  const defaults = Object.entries(all).filter(([name]) => session.inputNames.includes(name));
  if (defaults.length === 0) return session;
  return {
    get provider() {
      return session.provider;
    },
    get providerNote() {
      return session.providerNote;
    },
    // the intervention inputs are not the caller's business: they are filled in here
    inputNames: session.inputNames.filter((n) => !(n in all)),
    outputNames: session.outputNames,
    run(feeds, fetches, into) {
      const full = { ...feeds };
      for (const [name, t] of defaults) if (!(name in full)) full[name] = t;
      return session.run(full, fetches, into);
    },
    release: () => session.release(),
  };
}
