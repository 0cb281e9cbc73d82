"""One stream's logic layer, in parts with one job each (plain code, no I/O):

- `endpointer`: VAD, utterance boundaries, why the next decode is final (`FinalReason`);
- `context`: the stream buffer, what is kept, trimmed, cut in a pause, given as context;
- `prompt`: the committed text given to the decoder as its previous context;
- `guard`: the hallucination guard, a pure verdict on one hypothesis;
- `retry`: when a decode is not to be trusted and is done again;
- `policy`: when words become stable (the commit policies, chosen by name);
- `language`: the stream's language, fixed or decided by `streamer.stream.language_decider` (text held until then);
- `messages`: stable and partial messages from words;
- `results`: what a decode's result does (`ResultRules`, a part the session owns).

`streamer.stream.session.Session` orchestrates them: audio in, tick requests out, results in,
messages out.
"""
