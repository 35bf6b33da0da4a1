// What the client scripts (receive, load, hold, soak) share: their command
// line after the positional arguments, one JSON object per output line,
// and a file of user tokens, one per line.
import { readFileSync } from "node:fs";

// { positional: [first, second], opt(name, fallback), flag(name) }
export const parseArgs = (argv, positionalCount) => {
  const positional = argv.slice(0, positionalCount);
  const rest = argv.slice(positionalCount);
  const opt = (name, fallback) => {
    const i = rest.indexOf(name);
    return i >= 0 ? rest[i + 1] : fallback;
  };
  const flag = (name) => rest.includes(name);
  return { positional, opt, flag };
};

export const print = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

export const readTokens = (file) => readFileSync(file, "utf8").split("\n").filter(Boolean);
