import { fileURLToPath } from 'node:url';
import type { NextConfig } from 'next';

// This example lives inside the library's repository, which has its own lockfile: pin the app's root
// here (an app of its own does not need these two lines).
const root = fileURLToPath(new URL('.', import.meta.url));

const nextConfig: NextConfig = {
  // Loaded with Node's own module loader at run time, never bundled: one copy of the library (and of
  // its error classes) per process, and pg's optional native bindings stay out of the bundle.
  serverExternalPackages: ['tenant-secrets', 'pg'],
  turbopack: { root },
  outputFileTracingRoot: root,
};

export default nextConfig;
