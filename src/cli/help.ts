/** Examples block of a command's --help. Here, not in program.ts, so that commands do not import the program that imports them. */
export function examples(...lines: string[]): string {
  return `\nExamples:\n${lines.map((line) => `  ${line}`).join('\n')}`;
}
