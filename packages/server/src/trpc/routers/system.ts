import { doctorReport } from '@swarm/sdk/contract';
import type { Deps } from '../../services/context.js';
import { runDoctor } from '../../services/doctor.js';
import { authedProcedure, router } from '../init.js';

export const systemRouter = (deps: Deps) =>
  router({
    /** Admin: checks the database, migrations and object store from the registry's side (`swarm doctor`). */
    doctor: authedProcedure.output(doctorReport).query(({ ctx }) => runDoctor(deps, ctx.principal)),
  });
