//! Mail classification: is an inbound message an inquiry, and is an outbound one a response?
//! (Rules: DESIGN.md, "What is an inquiry" and "What is a response".)
