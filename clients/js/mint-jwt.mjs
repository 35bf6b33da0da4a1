// A JWT user token, minted with the ordinary Node library (jsonwebtoken), as
// an application's backend would mint one for its user.
//
//   node mint-jwt.mjs SECRET SUB [--expires-in SECONDS] [--audience AUD] [--issuer ISS]
//
// HS256 with SECRET (the node's JWT_SECRET). --expires-in may be negative:
// a token that expired that many seconds ago. Prints the token alone.
import jwt from "jsonwebtoken";
import { parseArgs } from "./cli.mjs";

const { positional: [secret, sub], opt } = parseArgs(process.argv.slice(2), 2);
const claims = { sub, exp: Math.floor(Date.now() / 1000) + Number(opt("--expires-in", "3600")) };
const options = { algorithm: "HS256" };
if (opt("--audience") !== undefined) options.audience = opt("--audience");
if (opt("--issuer") !== undefined) options.issuer = opt("--issuer");
process.stdout.write(jwt.sign(claims, secret, options) + "\n");
