"""Write the small demo sentiment data set that ships with finetune (`builtin:demo`).

Every sentence below was written by hand by the finetune authors for this demo; none is taken from
an existing data set. The script splits them deterministically into `train.csv` and `dev.csv` under
`finetune/datasets/demo/`, so running it again gives byte-identical files.

Usage: python scripts/make_demo_data.py
"""

from __future__ import annotations

import csv
import random
import sys
from pathlib import Path

SEED = 1234
DEV_PER_LABEL = 60
MIN_WORDS, MAX_WORDS = 4, 40
OUT_DIR = Path(__file__).resolve().parent.parent / "finetune" / "datasets" / "demo"

POSITIVE = [
    # films
    "A quiet, patient film that rewards you for paying attention.",
    "The lead actress carries every scene with effortless warmth.",
    "I laughed harder than I have in years.",
    "Gorgeous cinematography and a score that stayed with me for days.",
    "Not bad at all for a sequel nobody asked for.",
    "The twist actually earned its place instead of feeling cheap.",
    "My kids and I watched it twice in one weekend.",
    "Smart dialogue, tight pacing, and not a single wasted minute.",
    "I went in expecting nothing and walked out grinning.",
    "A beautifully acted drama about grief that never feels manipulative.",
    "The fight choreography is crisp and easy to follow, which is rare these days.",
    "Honestly one of the best documentaries I've seen about the ocean.",
    "It's long, but I never once checked my watch.",
    "The animation is stunning, the jokes work for adults and children alike, and the story has enough "
    "real heart to make my teenager tear up.",
    "Finally, a horror movie that trusts its audience to be scared by silence.",
    "Wonderful film, truly wonderful.",
    "I can't remember the last time a comedy made the whole theater applaud.",
    "The chemistry between the two leads is electric from the very first scene.",
    "A clever little thriller that punches well above its budget.",
    "Sure, the plot is simple, but the performances make it sing.",
    "I dragged my feet about seeing this because the marketing made it look like a generic action movie, "
    "but it turned out to be a moving story about two brothers, with a finale that had the whole room "
    "cheering.",
    # books
    "I stayed up until three in the morning to finish it.",
    "The prose is clean and lyrical without ever showing off.",
    "A thoughtful history book that reads like a novel.",
    "Her characters feel like people I have actually met.",
    "This cookbook has become the most stained book in my kitchen, in the best way.",
    "The ending made me cry on a crowded train, and I don't even mind.",
    "Clear explanations, useful diagrams, and exercises that actually build on each other.",
    "I've already bought three copies to give to friends.",
    "The mystery kept me guessing right up to the final chapter, and when the answer came it felt both "
    "surprising and completely fair.",
    "A warm, funny memoir that never slips into self-pity.",
    "Not the easiest read, but absolutely worth the effort.",
    "The translation flows so naturally you forget it was written in another language.",
    "My nine-year-old asked for the sequel before we even finished the first book.",
    "Short chapters and a gripping plot made this perfect for my commute.",
    "The world-building is rich without burying you in exposition.",
    "I didn't expect a book about accounting to be this entertaining.",
    "The audiobook narrator does all the voices brilliantly.",
    "Rereading it ten years later, it holds up beautifully.",
    "Practical advice that actually changed how I plan my week.",
    "Gripping from page one.",
    "I picked this up at an airport bookshop expecting a forgettable beach read, and instead found a tender, "
    "funny novel about a family restaurant that I keep recommending to everyone I know.",
    # restaurants
    "The pasta was clearly made by hand and tasted like it.",
    "Our waiter remembered my allergy without me having to repeat it.",
    "Best ramen in the city, and I've tried most of them.",
    "Small menu, but every dish we ordered was excellent.",
    "The dessert alone is worth the trip.",
    "Friendly staff, generous portions, and very fair prices.",
    "They squeezed us in without a reservation on a Friday night, which was lovely.",
    "The curry had real depth, with layers of spice that built slowly, and the flatbread that came with "
    "it was still warm and blistered from the oven.",
    "I wouldn't call it cheap, but every bite justified the price.",
    "Cozy little bakery with the flakiest croissants I've ever had.",
    "The vegetarian options here are creative rather than an afterthought.",
    "We came for brunch and stayed for another round of coffee.",
    "Fresh fish, simple seasoning, perfect execution.",
    "The chef came out to ask how we liked everything, which was a nice touch.",
    "Delivery arrived hot, early, and packed with care.",
    "Not fancy at all, but the tacos are unbelievably good.",
    "Their homemade lemonade is the perfect balance of sweet and tart.",
    "A great spot for a birthday dinner; the staff even brought a candle for the cake.",
    "The wine list is short and thoughtful, and the sommelier gave great advice.",
    "The soup tasted just like my grandmother's, and that's the highest praise I have.",
    "We took my parents here for their fortieth anniversary and the staff made it unforgettable, from the "
    "window table they saved for us to the dessert plate with their names written in chocolate.",
    # hotels
    "Spotless room, comfortable bed, and blackout curtains that actually work.",
    "The front desk upgraded us for our anniversary without being asked.",
    "Breakfast was generous and the coffee was surprisingly good.",
    "Great location, just a short walk from the old town.",
    "The pool was quiet in the mornings and perfectly clean, and the staff kept fresh towels stacked by "
    "the loungers all day long.",
    "Check-in took two minutes and the staff were all smiles.",
    "I've stayed in pricier hotels that weren't half as comfortable.",
    "The concierge found us last-minute theater tickets, which made our trip.",
    "Thick walls, so we slept soundly despite being near a busy street.",
    "A charming guesthouse run by a couple who clearly love what they do.",
    "The view from our balcony was worth every penny.",
    "Housekeeping was discreet and left little handwritten notes.",
    "Not a luxury resort, but it was clean, quiet, and exactly what we needed.",
    "The shower pressure was fantastic after a long day of hiking.",
    "They held our bags after checkout and even offered us a towel for the beach.",
    "Fast, reliable wifi throughout the building, so I could actually work.",
    "Our kids loved the game room and the staff were very patient with them.",
    "Would happily stay here again on our next visit.",
    "Lovely old building, beautifully restored, with modern bathrooms.",
    "They let us check in early after our overnight flight, which felt like a miracle.",
    "We arrived soaked from a thunderstorm at midnight, and the night porter brought us hot tea, dried our "
    "coats, and found us a quieter room at the back without charging a thing.",
    # gadgets
    "I was worried about battery life, but it easily lasts two full days of heavy use, including "
    "navigation, music, and far too much scrolling.",
    "These headphones are comfortable enough to wear for an entire flight.",
    "Setup took less than five minutes, even for me.",
    "The camera handles low light far better than my old phone.",
    "Solid build, sharp screen, and a keyboard that feels great to type on.",
    "I dropped it on tile twice and it still works perfectly.",
    "This little speaker is shockingly loud for its size.",
    "The noise cancelling is so good I missed my stop on the bus.",
    "My smartwatch tracks sleep accurately and the band is soft.",
    "I wasn't sure about an e-reader, but now I can't imagine going back.",
    "The robot vacuum maps the whole apartment and never gets stuck under the couch.",
    "Crisp, clear sound, and the microphone makes my calls sound professional.",
    "Well worth the upgrade from the previous model.",
    "The mechanical keyboard is a joy to type on, with satisfying, quiet switches.",
    "Great value for a budget tablet; it handles video and reading without complaint.",
    "The coffee grinder is consistent, quiet, and easy to clean.",
    "Works out of the box with no drivers or extra software.",
    "Lightweight, fast, and the fans are almost silent.",
    "My router signal finally reaches the back bedroom with this mesh system.",
    "Not bad at all for the price; it feels much more expensive than it is.",
    "After years of cheap earbuds that died within months, these have survived daily runs, a rainy commute, "
    "and one trip through the washing machine, and they still sound great.",
    # apps
    "Clean interface and it never crashes on my older phone.",
    "This budgeting app finally got me to stop overspending.",
    "The latest update made syncing noticeably faster.",
    "No ads, no nagging, just a tool that does its job.",
    "I love that the offline mode works on long flights.",
    "The language lessons are short enough to fit into my coffee break.",
    "Dark mode is easy on the eyes and the fonts are very readable.",
    "I wrote to support on a Sunday evening expecting silence, and they replied within an hour, fixed "
    "my login issue, and explained what had gone wrong.",
    "Honestly the best note-taking app I've tried, and I've tried a dozen.",
    "The meditation timer is simple and beautifully designed.",
    "It imported all my old data without losing a single entry.",
    "The map app rerouted me around a traffic jam and saved me half an hour.",
    "Finally a photo editor that doesn't hide the basic tools behind a subscription.",
    "The recipe app's shopping list feature has saved me so many trips to the store.",
    "Fast, lightweight, and it respects my privacy.",
    "My whole family uses the shared calendar now, and we rarely miss appointments.",
    "The workout tracker keeps me motivated without being pushy.",
    "I was skeptical, but the habit tracker has helped me read every night.",
    "Accessibility features are thoughtful; the screen reader support is excellent.",
    "It just works, every single time.",
    "I've tried every to-do app under the sun, and this is the first one that stuck, because it stays out of "
    "my way, syncs instantly between my phone and laptop, and never tries to upsell me.",
    # customer service
    "The agent stayed on the line until the problem was fully solved.",
    "They refunded my order the same day, no questions asked.",
    "I expected a fight over the warranty, but they replaced it immediately.",
    "Polite, patient, and genuinely helpful from start to finish.",
    "The chat assistant handed me to a real person as soon as I asked.",
    "They called back exactly when they said they would.",
    "A replacement part arrived within two days, with a handwritten apology.",
    "The woman at the counter explained every fee clearly and kindly.",
    "Not once did I have to repeat my account number, which felt like a small miracle.",
    "Their support team actually read my email instead of sending a canned reply.",
    "They followed up a week later to make sure everything was still working.",
    "Quick, friendly, and efficient; I was done in under ten minutes.",
    "The technician was on time, tidy, took his shoes off at the door, and explained exactly what he "
    "was doing while he replaced the boiler part.",
    "Even though it was my mistake, they waived the fee as a courtesy.",
    "I've never had such a painless return.",
    "The manager listened to my complaint and made it right on the spot.",
    "They shipped the missing cable overnight at no extra cost.",
    "Great service; I'll be a loyal customer for years.",
    "The phone menu was short and I reached a human almost instantly.",
    "I wouldn't call the process exciting, but it was smooth and completely stress-free.",
    "My parcel went missing over the holidays and I was dreading the call, but the woman I spoke to tracked "
    "it down, sent a replacement anyway, and emailed later to check it arrived.",
    # travel
    "The train was punctual, clean, and surprisingly quiet.",
    "Our guide was funny and patient, and seemed to know a story behind every old building, every "
    "statue, and even the odd crooked lamppost.",
    "The airline rebooked us on an earlier flight without any extra charge.",
    "Hiking the coastal trail at sunrise was the highlight of our year.",
    "Boarding was orderly and the crew were warm and attentive.",
    "The ferry ride offered incredible views of the islands.",
    "Our rental car was practically new and the pickup took five minutes.",
    "The walking tour was well paced and perfect for families.",
    "Legroom was generous, and the in-flight meal was actually tasty.",
    "We got lost in the market for hours and loved every minute.",
    "The overnight bus was more comfortable than I expected, with reclining seats and blankets.",
    "Public transport in the city was easy to figure out, even without speaking the language.",
    "The cooking class we booked on our trip was the best afternoon of the holiday.",
    "A relaxing cruise with friendly staff and excellent food.",
    "Our luggage came off the carousel first, which never happens.",
    "The tour company handled every detail, so we could simply enjoy ourselves.",
    "Not bad at all for a budget airline; we left on time and landed early.",
    "Snorkeling with the turtles was absolutely magical.",
    "The mountain village was peaceful and the locals were incredibly welcoming.",
    "The travel insurance claim was paid in full within a week.",
    "The whole trip could have fallen apart when our connecting flight was cancelled, but the gate agent "
    "rebooked all six of us, found seats together, and handed the kids snack vouchers.",
    # music
    "This album gets better with every listen.",
    "Her voice is raw and honest in a way that gave me chills.",
    "The band sounded even tighter live than on the record.",
    "A joyful, danceable record that I've played all summer.",
    "The production is warm and spacious, with every instrument given room to breathe.",
    "Not my usual genre, but I couldn't stop listening.",
    "The orchestra played the final movement with real fire, and the young soloist got a standing "
    "ovation that went on for several minutes.",
    "The lyrics are clever, tender, and occasionally very funny.",
    "The small venue made the concert feel intimate and special.",
    "A stunning debut from a songwriter to watch.",
    "The remastered edition finally lets the bass lines shine.",
    "The jazz trio played for two hours and the room never lost interest.",
    "Gorgeous harmonies throughout the whole album.",
    "The guitar solo in the third song is pure bliss.",
    "I bought tickets for their next show before leaving this one.",
    "Calm, beautiful piano pieces that help me focus while working.",
    "The festival lineup was fantastic and the sound quality was excellent everywhere.",
    "A bold reinvention that still feels true to their roots.",
    "The choir sent shivers down my spine.",
    "I wouldn't call it groundbreaking, but it's a lovely, heartfelt record I keep returning to.",
    "I only went to the gig because a friend had a spare ticket, but the band played with such energy and "
    "joy that I spent the whole drive home looking up their older albums.",
    # games
    "The controls are tight and responsive, exactly how a platformer should feel.",
    "I sank forty hours into it and still want more.",
    "The puzzles are clever without ever feeling unfair.",
    "Gorgeous art style and a soundtrack I now listen to on its own.",
    "Co-op mode is a blast with friends.",
    "I picked it up for the combat, but the story surprised me with how emotional it got, especially "
    "the quiet conversations between missions.",
    "Runs smoothly even on my aging laptop.",
    "Every boss fight feels like a satisfying test of what you've learned.",
    "The developers keep adding free content, which is refreshing.",
    "A cozy farming game that melts away my stress after work.",
    "The board game is easy to teach and has our group asking for one more round.",
    "Not bad at all for an indie studio's first game; it's actually brilliant.",
    "The open world feels alive, with small surprises around every corner.",
    "Difficulty settings are flexible, so my whole family can play together.",
    "The voice acting is superb across the entire cast.",
    "I love that there are no loot boxes or pay-to-win nonsense.",
    "A brilliant strategy game that rewards careful planning.",
    "The multiplayer matchmaking is fast and fair.",
    "Charming, funny, and full of heart.",
    "The remake respects the original while fixing all its clunky parts.",
    "I normally bounce off strategy games within an hour, yet this one eased me in with a gentle campaign, "
    "explained every system clearly, and now I play late into the night with friends.",
]

NEGATIVE = [
    # films
    "Two and a half hours of my life I will never get back.",
    "The plot holes are big enough to drive a truck through.",
    "Wooden acting and dialogue that sounds like it was written by a committee.",
    "I fell asleep halfway through and didn't miss anything.",
    "The trailer showed every good scene, and there weren't many.",
    "Not good, not even in a so-bad-it's-fun way.",
    "The shaky handheld camera made me feel seasick by the second act, and the constant quick cuts "
    "meant I rarely knew who was hitting whom.",
    "A lazy remake that strips away everything that made the original special.",
    "The jokes land about as well as a brick.",
    "Far too long, painfully slow, and somehow still confusing.",
    "I wouldn't call it good; the ending just stops instead of resolving anything.",
    "The special effects look unfinished, like a video game from twenty years ago.",
    "The sound mix is so muddy that I needed subtitles for the dialogue.",
    "Oh great, another origin story that takes two hours to get going.",
    "The romance has zero chemistry and the leads seem bored.",
    "A preachy, heavy-handed film that mistakes lectures for storytelling.",
    "We walked out after forty minutes.",
    "Loud, dumb, and exhausting.",
    "The director clearly ran out of ideas after the opening scene.",
    "Half the audience was on their phones by the midpoint, and honestly I don't blame them.",
    "The first twenty minutes set up an intriguing mystery, but the film abandons it for endless car chases, "
    "and by the time the villain explains his plan I had stopped caring entirely.",
    # books
    "I gave up after a hundred pages of nothing happening.",
    "The author repeats the same point in every single chapter.",
    "Flat characters, clumsy prose, and a predictable ending.",
    "For a hardback that cost this much, it's shocking that the pages started falling out of the "
    "binding within a week of gentle reading.",
    "Full of factual errors that a quick search would have caught.",
    'The self-help advice boils down to "just try harder," which is useless.',
    "I wanted to like it, but the narrator is insufferable.",
    "The e-book formatting is a mess, with broken tables and missing images.",
    "A thriller with no thrills and a villain you can spot on page ten.",
    "The sequel undoes everything that made the first book worth reading.",
    "Dense, dry, and far more expensive than it has any right to be.",
    "The recipes don't work; two of my cakes collapsed following the exact instructions.",
    "Not a bad idea for a novel, but the execution is a mess.",
    "The audiobook narrator mispronounces half the names and reads in a monotone.",
    "The dialogue is so stilted that I winced on almost every page.",
    "It reads like a first draft that nobody bothered to edit.",
    "The children's book has lovely pictures but a story that makes no sense.",
    "I couldn't finish it.",
    "The coding examples are outdated and most of them don't even run.",
    "Marketed as a gripping mystery, it's really two hundred pages about the detective's breakfast.",
    "The blurb promised a sweeping historical epic, but the book spends three hundred pages on a love "
    "triangle with no spark, then rushes through the actual war in a few paragraphs.",
    # restaurants
    "The steak arrived cold and cooked well past what we asked for.",
    "We waited forty-five minutes for a table we had reserved.",
    "Overpriced, underseasoned, and served on a sticky table.",
    "The waiter rolled his eyes when we asked for tap water and then ignored our table for the rest of "
    "the evening.",
    "My salad had a long hair in it, and they still charged us for it.",
    "The soup was so salty I couldn't finish a single spoonful.",
    "Tiny portions and a surprise service charge on the bill.",
    "The music was so loud we had to shout across the table.",
    "I wouldn't call it food poisoning, but I felt awful for the rest of the night.",
    "The delivery showed up an hour late and the fries were soggy.",
    "They forgot half of our order and then argued that we never asked for it.",
    "The pizza crust tasted like cardboard.",
    "Lovely decor, shame about the food.",
    "The sushi rice was warm and mushy, and the fish didn't smell fresh.",
    "Nobody came to take our order for twenty minutes, so we left.",
    "Bland curry, stale bread, and a very rude manager.",
    "For what they charge, I expected far more than microwaved leftovers.",
    "The coffee was burnt and the milk was clearly on the turn.",
    "My burger was raw in the middle.",
    "Not good at all; the noodles were clumped together and swimming in oil.",
    "We were seated next to the kitchen door, waited half an hour for drinks, got someone else's main "
    "course, and when we complained the manager said we should have ordered something simpler.",
    # hotels
    "The room smelled of smoke even though it was supposedly non-smoking.",
    "Paper-thin walls; I heard every word of my neighbor's phone call.",
    "There was mold in the shower and stains on the sheets.",
    "The air conditioning rattled all night and never actually cooled the room.",
    "They charged a resort fee for a pool that was closed the whole week.",
    "Check-in took over an hour because they had lost our booking.",
    "The photos online must have been taken a decade ago.",
    "Breakfast was a sad tray of dry pastries and lukewarm coffee.",
    "The wifi dropped every few minutes, which made working impossible.",
    "Our room faced a construction site that started drilling at seven.",
    "The elevator was broken for our entire stay, we were on the ninth floor, and nobody offered to "
    "move us or help with our bags.",
    "Staff were dismissive when we reported a leaking ceiling.",
    "Overpriced, noisy, and nowhere near the beach as advertised.",
    "The bed sagged in the middle and the pillows were flat as pancakes.",
    "Housekeeping never came once during our four-night stay.",
    "The so-called sea view was a sliver of water between two parking garages.",
    "We will never stay here again.",
    "Calling this a hotel is generous; it's a hostel with a fancier sign.",
    "A cockroach greeted us in the bathroom on the first night.",
    "They took a huge deposit and then took three weeks to refund it.",
    "We booked this place for the spa and the sea view, but the spa was closed for renovation, the view "
    "was of a car park, and the front desk acted as though we were a nuisance.",
    # gadgets
    "The battery barely makes it to lunchtime.",
    "Stopped charging after two weeks and the warranty claim went nowhere.",
    "The touchscreen registers taps in completely the wrong place.",
    "These earbuds keep falling out, and the left one disconnects constantly.",
    "The fan whines loudly even when the laptop is idle, so every video call comes with a background "
    "hum that everyone on the line can hear.",
    "Cheap plastic that creaks every time you pick it up.",
    "The camera produces blurry, washed-out photos in anything but bright sunlight.",
    "It overheats during video calls and then shuts itself off.",
    "Not good; the Bluetooth connection drops if I walk to the next room.",
    "The smart plug needs yet another account and a constant internet connection.",
    "The blender leaked from the base the very first time I used it.",
    "The screen cracked from a short fall onto a carpet.",
    "My fitness tracker counted ten thousand steps while I was driving.",
    "The keyboard's space bar sticks, and half the keys double-type.",
    "Way too heavy to carry around, despite being marketed as ultraportable.",
    "The charger got so hot I was afraid to leave it plugged in.",
    "Great, another gadget that needs a firmware update before it does anything at all.",
    "The speaker distorts badly at anything above half volume.",
    "Returned it the next day.",
    "The printer jams constantly and the ink costs more than the printer itself.",
    "The box promises twelve hours of battery and seamless pairing, yet mine dies after four hours, forgets "
    "my phone every morning, and the companion app crashes whenever I try to update it.",
    # apps
    "Crashes every time I try to upload a photo.",
    "The update deleted all my saved notes without warning.",
    "Ads pop up every thirty seconds, even in the paid version.",
    "The app drains my battery even when it's closed.",
    "I can't find the settings anywhere after the redesign.",
    "It asks for access to my contacts, location, and microphone just to show the weather.",
    "Login fails half the time, the password reset email takes an hour to arrive, and support has not "
    "answered either of my messages.",
    "Subscription renewed without any reminder, and cancelling is a maze.",
    "The sync feature duplicates every entry, so my calendar is now chaos.",
    "The fitness app kept losing my workouts halfway through.",
    "Notifications are constant and impossible to turn off completely.",
    "Not a bad concept, but the app is too buggy to actually use.",
    "The banking app logged me out in the middle of a transfer.",
    "Tiny buttons, cluttered screens, and a font that's hard to read.",
    "It used to be free and now basic features sit behind a paywall.",
    "The translation app gave me a sentence that made the waiter laugh at me.",
    "Dark patterns everywhere; even closing a pop-up triggers another offer.",
    "Uninstalled after ten minutes.",
    "The search function never finds anything I type, even exact titles.",
    "The voice assistant misunderstands me constantly and then confidently does the wrong thing.",
    "Since the redesign, what used to take two taps now takes six, my saved playlists have vanished, and the "
    "developers just post a cheerful changelog saying they improved my experience.",
    # customer service
    "I spent two hours on hold only to be disconnected.",
    "The agent read from a script and ignored everything I said.",
    "They promised a callback within twenty-four hours that never came, and when I rang again there was "
    "no record of my first call.",
    'My refund has been "processing" for three months.',
    "Transferred five times and nobody could answer a simple question.",
    "The chatbot kept looping back to the same useless menu.",
    "Rude, dismissive, and clearly uninterested in helping.",
    "They blamed me for a defect that was obviously from the factory.",
    "I wouldn't call that support; it was more like being politely ignored.",
    "Every email I send gets a different answer from a different person.",
    "The technician never showed up, and nobody called to explain.",
    "They charged me twice and then asked me to prove it.",
    "Cancelling my account required a phone call, a letter, and a lot of patience.",
    "Their so-called priority line still had a ninety-minute wait.",
    "Absolutely useless from start to finish.",
    "They closed my ticket as resolved without fixing anything.",
    "The replacement they sent was broken in exactly the same way.",
    "I was told to restart my router seven times by seven different people.",
    "Not helpful at all; they just kept apologizing and doing nothing.",
    "Thanks for the lovely automated reply saying my problem is important to you, three weeks ago.",
    "I called about a simple billing error and was passed between four departments, each telling a "
    "different story, and after ninety minutes the line went dead and I had to start over.",
    # travel
    "Our flight was delayed six hours with no explanation or food vouchers.",
    "The airline lost my suitcase and took ten days to find it.",
    "The train was so crowded we stood for the entire journey.",
    "The tour guide rushed us through every site to get to the gift shop.",
    "The rental car company charged us for a scratch that was already there.",
    "Cramped seats and a crew who seemed annoyed to be there.",
    "The bus broke down twice on the way to the coast, and each time we waited over an hour in the heat "
    "with no water.",
    "The beach was covered in litter and the water was murky.",
    "Our cruise cabin was tiny, windowless, and right above the engine room.",
    "They overbooked the flight and bumped us without any compensation.",
    "The so-called guided hike was just a man pointing vaguely at trees.",
    "Customs took three hours because only one desk was open.",
    "The tourist trap restaurants near the square charge triple for frozen food.",
    "Not a great trip; it rained every day and half the attractions were closed.",
    "The airport shuttle never arrived, and we paid for a taxi ourselves.",
    "The travel agency booked the wrong dates and refused to fix it.",
    "Missed our connection because the first flight sat on the runway for two hours.",
    "The ferry was canceled and nobody told us until we reached the dock.",
    "Worst holiday we've ever had.",
    "The overnight train promised sleeper cabins but gave us upright seats under bright lights.",
    "The brochure described a relaxing countryside retreat, but we spent most of the week on a bus with "
    "broken air conditioning, stopping at souvenir shops where the guide earned a commission.",
    # music
    "Every song on this album sounds exactly the same.",
    "The vocals are buried under so much autotune that they sound robotic.",
    "The concert started two hours late and the sound was terrible.",
    "A tired, formulaic record from a band that used to take risks.",
    "The lyrics are painfully clichéd.",
    "I couldn't hear the singer over the distorted bass.",
    "The remaster is so loud and compressed that it's tiring to listen to.",
    "Not good; the live album is full of sloppy mistakes and crowd noise.",
    "Overpriced tickets for a forty-minute set with no encore.",
    "The new single is a shameless copy of last year's hit.",
    "The orchestra seemed under-rehearsed, and the brass kept coming in late.",
    "The festival had long lines for water and a muddy, overcrowded stage area.",
    "Boring, repetitive, and far too long.",
    "Their acoustic cover strips all the energy out of the original.",
    "Calling it music is a stretch; it's mostly noise over a drum machine.",
    "The vinyl arrived warped, the sleeve was creased, and the record skips on every side, which is a "
    "real shame for a limited pressing.",
    "A bloated double album that should have been a tight EP.",
    "The streaming version cuts off the last minute of the final track.",
    "The musical's songs are forgettable and the singing was often off-key.",
    "Sounds like it was recorded in a bathroom.",
    "I had waited years to see them live, but the singer barely spoke to the crowd, skipped the songs "
    "everyone came for, and left after forty minutes while the sound kept cutting out.",
    # games
    "Constant crashes made it impossible to finish the second level.",
    "The game pushes microtransactions at you every few minutes.",
    "Clunky controls and a camera that fights you at every turn.",
    "The story is paper-thin, the characters are forgettable, and the ending arrives so abruptly that I "
    "thought my save file had been corrupted.",
    "Matchmaking takes forever and then pairs you with players far above your level.",
    "Performance on consoles is awful, with constant stuttering.",
    "The tutorial explains nothing, and the menus are a maze.",
    "Not bad graphics, but the gameplay is shallow and repetitive.",
    "Full price for a game that feels like an early beta.",
    "The servers went down on launch day and stayed down all weekend.",
    "The sequel removed split-screen co-op, the one thing my friends and I loved.",
    "The board game's rulebook is so confusing that we gave up after an hour.",
    "The difficulty spikes are brutal and feel completely unfair.",
    "A save bug wiped out twenty hours of my progress.",
    "Oh good, another open world stuffed with identical checklists.",
    "The voice acting is flat and the lip syncing is way off.",
    "Online-only, even for the single-player campaign, which is absurd.",
    "Bored within an hour.",
    "Cheaters run wild in ranked matches and the developers do nothing.",
    "I wouldn't call it a remaster; it's the same old game with a blurry filter on top.",
    "I was excited to revisit this series, but the new entry is buried under login rewards, battle passes, "
    "and timed events, and the actual game feels squeezed in between store pages.",
]


def check(sentences: list[str], name: str) -> None:
    """Stop with a message if a list breaks the data set's rules (size, length, duplicates)."""
    problems = []
    if len(sentences) != 210:
        problems.append(f"{name}: expected 210 sentences, found {len(sentences)}")
    for text in sentences:
        words = len(text.split())
        if not MIN_WORDS <= words <= MAX_WORDS:
            problems.append(f"{name}: {words} words (want {MIN_WORDS}-{MAX_WORDS}): {text!r}")
    if problems:
        sys.exit("\n".join(problems))


def split(rng: random.Random) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Stratified split: shuffle each label's sentences, take DEV_PER_LABEL of each for dev."""
    train: list[tuple[str, str]] = []
    dev: list[tuple[str, str]] = []
    for label, sentences in (("positive", POSITIVE), ("negative", NEGATIVE)):
        shuffled = list(sentences)
        rng.shuffle(shuffled)
        dev.extend((text, label) for text in shuffled[:DEV_PER_LABEL])
        train.extend((text, label) for text in shuffled[DEV_PER_LABEL:])
    # Interleave the labels so neither file is sorted by class.
    rng.shuffle(train)
    rng.shuffle(dev)
    return train, dev


def write(path: Path, rows: list[tuple[str, str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["text", "label"])
        writer.writerows(rows)


def main() -> None:
    check(POSITIVE, "POSITIVE")
    check(NEGATIVE, "NEGATIVE")
    seen = [text.casefold() for text in POSITIVE + NEGATIVE]
    duplicates = sorted({text for text in seen if seen.count(text) > 1})
    if duplicates:
        sys.exit("duplicate sentences:\n" + "\n".join(duplicates))

    train, dev = split(random.Random(SEED))
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train.csv", train), ("dev.csv", dev)):
        write(OUT_DIR / name, rows)
        positive = sum(1 for _, label in rows if label == "positive")
        print(f"{OUT_DIR / name}: {len(rows)} rows ({positive} positive, {len(rows) - positive} negative)")


if __name__ == "__main__":
    main()
