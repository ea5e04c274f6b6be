// longpoll.mjs - the ES-module face of longpoll.js (which stays a classic script).
//
//   import { LongPoll } from "/web/longpoll.mjs";   // or: import LongPoll from ...
//
// Importing runs longpoll.js once, which assigns globalThis.LongPoll.
import "./longpoll.js";

export const LongPoll = globalThis.LongPoll;
export const LongPollError = LongPoll.LongPollError;
export default LongPoll;
