/**
 * Which environment variable a secret becomes in `tenant-secrets run`, and which variables a
 * secret's name never becomes: those that change how a program is loaded or runs (the dynamic
 * loader, shells, language runtimes and their package managers, build tools, TLS trust, proxies).
 * Whoever can write a tenant's secrets chooses their names; `node_options` must not become
 * `NODE_OPTIONS=--require ./evil.cjs` in the command. Such a variable is set only when the operator
 * names it with `--map secret=VARIABLE`.
 */

/** Refused variables of one kind. `NAME*` is a prefix, `*NAME` a suffix; compared case-insensitively. */
interface RefusedGroup {
  readonly what: string;
  readonly names: readonly string[];
}

/** Never derived from a secret's name (--map may still set them). */
export const REFUSED_VARIABLES: readonly RefusedGroup[] = [
  {
    what: 'dynamic loader, C library, locale',
    names: [
      'LD_*',
      'DYLD_*',
      'GCONV_PATH',
      'GLIBC_TUNABLES',
      'LOCPATH',
      'MALLOC_*',
      'NLSPATH',
      'HOSTALIASES',
      'LOCALDOMAIN',
      'RES_OPTIONS',
      'LANG',
      'LANGUAGE',
      'LC_*',
      'TZ',
      'TZDIR',
      'TMPDIR',
      'TMP',
      'TEMP',
    ],
  },
  {
    what: 'shells and the command search',
    names: [
      'PATH',
      'PATHEXT',
      'COMSPEC',
      'SHELL',
      'HOME',
      'XDG_*',
      'ENV',
      'BASH_*',
      'BASHOPTS',
      'SHELLOPTS',
      'PS1',
      'PS2',
      'PS3',
      'PS4',
      'PROMPT_COMMAND',
      'IFS',
      'CDPATH',
      'GLOBIGNORE',
      'FPATH',
      'ZDOTDIR',
      'POSIXLY_CORRECT',
      '_',
    ],
  },
  {
    what: 'Node.js and JavaScript tools',
    names: ['NODE_*', 'NPM_CONFIG_*', 'YARN_*', 'PNPM_*', 'COREPACK_*', 'BUN_*', 'DENO_*', 'ELECTRON_*'],
  },
  { what: 'Python', names: ['PYTHON*', 'PIP_*'] },
  { what: 'Perl and Ruby', names: ['PERL*', 'RUBY*', 'GEM_*', 'BUNDLE_*'] },
  {
    what: 'Java',
    names: ['JAVA_*', '_JAVA_OPTIONS', 'JDK_JAVA_OPTIONS', 'CLASSPATH', 'MAVEN_OPTS', 'GRADLE_OPTS'],
  },
  {
    what: 'other runtimes',
    names: [
      'PHPRC',
      'PHP_INI_SCAN_DIR',
      'GOFLAGS',
      'GOROOT',
      'GOPATH',
      'GOENV',
      'GOTOOLCHAIN',
      'GOPROXY',
      'GODEBUG',
      'RUSTFLAGS',
      'RUSTC_WRAPPER',
      'CARGO_*',
      'DOTNET_*',
      'COMPLUS_*',
      'CORECLR_*',
      'LUA_*',
      'TCLLIBPATH',
      'ERL_*',
    ],
  },
  {
    what: 'compilers and build tools',
    names: [
      'CC',
      'CXX',
      'CPP',
      'LD',
      'AR',
      'AS',
      'MAKE',
      'MAKEFLAGS',
      'MFLAGS',
      'CFLAGS',
      'CXXFLAGS',
      'CPPFLAGS',
      'LDFLAGS',
      'LIBRARY_PATH',
      'CPATH',
      'C_INCLUDE_PATH',
      'CPLUS_INCLUDE_PATH',
      'PKG_CONFIG_*',
    ],
  },
  {
    what: 'programs that start other programs',
    names: [
      'GIT_*',
      'SSH_*',
      'EDITOR',
      'VISUAL',
      'PAGER',
      'MANPAGER',
      'LESSOPEN',
      'LESSCLOSE',
      'BROWSER',
      'TERMINFO',
      'TERMINFO_DIRS',
      '*SAN_OPTIONS',
    ],
  },
  {
    what: 'TLS trust and proxies',
    names: ['SSL_CERT_*', 'SSLKEYLOGFILE', 'OPENSSL_*', 'CURL_CA_BUNDLE', 'REQUESTS_CA_BUNDLE', '*_PROXY'],
  },
  { what: 'tenant-secrets itself', names: ['TENANT_SECRETS_*'] },
];

function matches(pattern: string, upper: string): boolean {
  if (pattern.endsWith('*')) return upper.startsWith(pattern.slice(0, -1));
  if (pattern.startsWith('*')) return upper.endsWith(pattern.slice(1));
  return upper === pattern;
}

/**
 * The kind of a variable that a secret's name must not set (`'Node.js and JavaScript tools'` for
 * `NODE_OPTIONS`), or undefined when it may. Case-insensitive: `http_proxy` is read as much as
 * `HTTP_PROXY`, and Windows does not tell `Path` from `PATH`.
 */
export function refusedKind(variable: string): string | undefined {
  const upper = variable.toUpperCase();
  return REFUSED_VARIABLES.find((group) => group.names.some((name) => matches(name, upper)))?.what;
}

/**
 * The variable of a secret named `rest` after the prefix: upper-cased, every character outside
 * `[A-Z0-9_]` replaced by `_`, and `_` in front when it would start with a digit.
 */
export function variableFor(rest: string): string {
  const upper = rest.toUpperCase().replace(/[^A-Z0-9_]/g, '_');
  return /^[0-9]/.test(upper) ? `_${upper}` : upper;
}

/** The refused names for `run --help`, one indented line per kind, wrapped at `width`. */
export function refusedVariablesHelp(width = 100): string {
  const lines: string[] = [];
  for (const group of REFUSED_VARIABLES) {
    let line = `  ${group.what}:`;
    for (const [i, name] of group.names.entries()) {
      const word = ` ${name}${i < group.names.length - 1 ? ',' : ''}`;
      if (line.length + word.length > width) {
        lines.push(line);
        line = `   `;
      }
      line += word;
    }
    lines.push(line);
  }
  return lines.join('\n');
}
