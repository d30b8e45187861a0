import { doctorReport } from '@swarm/sdk/contract';
import type { Deps } from '../../services/context.js';
import { runDoctor } from '../../services/doctor.js';
import { type ProcedureTable, query } from '../procedure.js';

export const systemProcedures = (deps: Deps) =>
  ({
    /** Admin: checks the database, migrations and object store from the registry's side (`swarm doctor`). */
    doctor: query({ output: doctorReport, run: ({ principal }) => runDoctor(deps, principal) }),
  }) satisfies ProcedureTable;
