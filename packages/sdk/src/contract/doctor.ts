/** Answer of `system.doctor` and of `swarm doctor`: one line per check of the registry's dependencies. */
import { z } from 'zod';

export const doctorStatus = z.enum(['ok', 'warn', 'fail']);
export type DoctorStatus = z.infer<typeof doctorStatus>;

export const doctorCheck = z.object({
  /** Stable identifier of the check, e.g. `database`, `migrations`, `store-roundtrip`. */
  name: z.string(),
  status: doctorStatus,
  /** What was found, one line. */
  detail: z.string(),
  /** What to do about a warn or fail, one line. */
  hint: z.string().optional(),
});
export type DoctorCheck = z.infer<typeof doctorCheck>;

export const doctorReport = z.object({
  /** The registry's version (its package version). */
  version: z.string(),
  storage: z.enum(['fs', 's3']),
  checks: z.array(doctorCheck),
});
export type DoctorReport = z.infer<typeof doctorReport>;
