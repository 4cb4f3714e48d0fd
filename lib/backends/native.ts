// The OpenBLAS backend: a thin call into the core addon. Finiteness and labels are checked again
// in C++ while the data is hot, so nothing is scanned twice here.
import { coreBinding } from '../binding';
import { addonBackend } from './backend';

export const nativeBackend = addonBackend('native', coreBinding);
