// Names in quarantine/. Two copies of the same thing may be set aside in the same millisecond (a
// damaged replica, then its rewrite found damaged too); a rename onto an existing name would
// silently replace the first, so every name carries a serial number as well as the time.

import { join } from 'node:path';

let serial = 0;

/** A fresh path in `quarantineDir` for something that was called `base`. */
export function quarantinePath(quarantineDir: string, base: string): string {
  return join(quarantineDir, `${base}.${Date.now()}.${(serial++).toString(36)}`);
}
